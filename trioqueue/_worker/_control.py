"""The control listener: remote cancel, pause and resume over pub/sub ``<prefix>:control``.

A message ``{"cancel": JOB_ID}`` cancels that job if one of this worker's consumers
runs it; ``{"pause": QUEUE}`` and ``{"resume": QUEUE}`` (from ``pause.lua``) update
the worker's pause flags at once. Messages missed while the subscription was down
(an outage) are caught up by the consumers' renewals, which check cancel markers,
and by the pause watch, which reads the pause flags.

Cancellation: cancelled with the other loops once the consumers drained.

Error handling: the subscription is re-established with backoff; a lost pub/sub
connection is not reported as a broker outage (the other loops judge that), other
errors are logged; a malformed message is logged and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from trioqueue._keys import control_channel
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._outage import repeat

__all__ = ["ControlListener"]

log = logging.getLogger("trioqueue.worker.control")


class ControlListener:
    """Hands cancel requests to ``cancel_job`` (True if a consumer ran the job) and
    pauses and resumes to ``ctx.pauses``."""

    def __init__(self, ctx: WorkerContext, cancel_job: Callable[[str], bool]) -> None:
        self._ctx = ctx
        self._cancel_job = cancel_job

    async def run(self) -> None:
        """Listen until cancelled."""
        channel = control_channel(self._ctx.prefix)

        async def step() -> float:
            async with self._ctx.redis.subscribe([channel]) as messages:
                async for data in messages:
                    self.handle(data)
            return 0.0

        async def failed(exc: Exception) -> None:
            log.exception("control listener failed; restarting it")

        await repeat("control listener", step, None, on_error=failed)

    def handle(self, data: Any) -> None:
        """Act on one control message."""
        try:
            request = orjson.loads(data)
            if "pause" in request or "resume" in request:
                paused = "pause" in request
                self._ctx.pauses.set(str(request["pause" if paused else "resume"]), paused)
                return
            job_id = str(request["cancel"])
        except Exception:
            log.warning("ignoring malformed control message %r", data)
            return
        self._cancel_job(job_id)
