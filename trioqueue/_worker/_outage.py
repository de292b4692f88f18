"""Riding out broker outages: capped exponential backoff, logged once per outage."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from trioqueue._connection import is_connection_error, redact

log = logging.getLogger("trioqueue")
T = TypeVar("T")


def reconnect_delay(attempt: int, *, initial: float = 0.05, cap: float = 2.0) -> float:
    """Full-jitter capped exponential backoff for reconnect attempt ``attempt`` (0-based)."""
    return float(random.uniform(0.5, 1.0) * min(cap, initial * 2.0**attempt))


class OutageTracker:
    """Shared by every loop of a supervisor so an outage is reported once, not per attempt.

    ``on_recover`` callbacks run when the broker answers again (e.g. to distrust
    peers' heartbeats for a while).
    """

    def __init__(self, url: str | None) -> None:
        self._url = url
        self._since: float | None = None
        self.outages = 0
        self._oom_logged = -math.inf
        self.on_recover: list[Callable[[], None]] = []

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        if "OOM" in str(exc):
            # Out of memory is not an outage: acknowledgements still go through, so
            # calls would flip between failing and working. Say so once a minute.
            now = trio.current_time()
            if now - self._oom_logged >= 60.0:
                self._oom_logged = now
                log.warning(
                    "broker is out of memory (maxmemory reached): %s is refused until "
                    "jobs are drained; acknowledgements and heartbeats still work",
                    what,
                )
            return
        if self._since is None:
            self._since = trio.current_time()
            self.outages += 1
            log.warning(
                "broker unreachable (%s: %s); retrying with backoff",
                what,
                redact(f"{type(exc).__name__}: {exc}", self._url),
            )

    def succeeded(self) -> None:
        if self._since is not None:
            took = trio.current_time() - self._since
            self._since = None
            log.warning("broker reachable again after %.1fs; resuming", took)
            for callback in self.on_recover:
                callback()

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` until it succeeds, sleeping with backoff on connection errors.

        Other errors propagate. Safe only for idempotent operations.
        """
        attempt = 0
        while True:
            try:
                result = await fn()
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                self.failed(what, exc)
                await trio.sleep(reconnect_delay(attempt))
                attempt += 1
                continue
            self.succeeded()
            return result
