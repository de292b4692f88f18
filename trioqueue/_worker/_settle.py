"""Settling a job that did not simply succeed: retry later, or dead-letter it.

``fail`` classifies a handler's failure: ``Reject`` and a failure on the last attempt
go to the dead-letter stream (with the error and a traceback), anything else is
retried after the queue's backoff (or ``Retry.delay``) through the delayed set.
Every settlement first checks that the entry is still ours (fencing); a refused one
is counted and logged, never applied.

Error handling: settlements are retried through outages until they get through (the
job has run: its outcome must not be lost).

Signals: the history counts the consumer's statistics, written by the acker's next
call (woken here); the scripts write the jobs' events, after the acker's pending ones. A
handler's progress (``report_progress``) is stored here too, fenced like a settlement.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import trio

from trioqueue import _deadletters
from trioqueue import _scripts as scripts
from trioqueue._config import QueueSettings
from trioqueue._context import JobContext
from trioqueue._envelope import F_ID, Envelope
from trioqueue._errors import Reject, Retry
from trioqueue._keys import PartitionKeys
from trioqueue._worker._acker import Acker
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._stats import ConsumerStats, report_fenced

__all__ = ["Settler"]

log = logging.getLogger("trioqueue.worker.consumer")

# A job's progress is kept at least this long (else as long as its outcome).
PROGRESS_TTL_MS = 3_600_000


class Settler:
    """Retries and dead-letters the jobs of one consumer."""

    def __init__(
        self,
        ctx: WorkerContext,
        keys: PartitionKeys,
        settings: QueueSettings,
        stats: ConsumerStats,
        acker: Acker,
        *,
        poke_scheduler: Callable[[], None],
    ) -> None:
        self._ctx = ctx
        self._keys = keys
        self._settings = settings
        self._stats = stats
        self._acker = acker
        self._poke_scheduler = poke_scheduler

    @staticmethod
    def describe(exc: BaseException, timeout: float | None) -> tuple[str, str]:
        """The error type and message stored for a failed attempt."""
        if isinstance(exc, trio.TooSlowError):
            return "Timeout", f"handler ran longer than timeout={timeout}s"
        return type(exc).__name__, str(exc)

    async def fail(self, env: Envelope, exc: BaseException) -> None:
        """Settle a failed attempt: dead-letter it or schedule its retry."""
        s = self._settings
        self._stats.failed += 1
        if isinstance(exc, Reject):
            await self.dead(env, "Reject", exc.reason)
            return
        error_type, error = self.describe(exc, s.timeout)
        if env.attempt > s.retries:
            log.error(
                "job %s (%s) failed on its last attempt %d: %s: %s",
                env.job_id,
                env.type_name,
                env.attempt,
                error_type,
                error,
                exc_info=exc if not isinstance(exc, Retry | trio.TooSlowError) else None,
            )
            await self.dead(env, error_type, error, exc)
            return
        if isinstance(exc, Retry):
            delay = exc.delay
        else:
            delay = s.backoff.delay(env.attempt, random.random())
            log.warning(
                "job %s (%s) attempt %d on queue %s failed, retrying in %.2fs: %s: %s",
                env.job_id,
                env.type_name,
                env.attempt,
                s.name,
                delay,
                error_type,
                error,
                exc_info=exc if not isinstance(exc, trio.TooSlowError) else None,
            )
        ok = await self._settle(
            "retry",
            scripts.retry(
                self._keys,
                consumer=self._ctx.member_id,
                entry_id=env.entry_id,
                delay_ms=int(delay * 1000),
                payload=env.delayed_payload(env.attempt + 1, f"{error_type}: {error}"),
                events_max=self._acker.events_max,
                job_id=env.job_id,
                attempt=env.attempt,
                error_type=error_type,
                error=error,
            ),
        )
        if ok:
            self._stats.retried += 1
            self._acker.note()
            self._poke_scheduler()
        else:
            report_fenced(self._stats, s.name, env.entry_id, "retry")

    async def dead(
        self, env: Envelope, error_type: str, error: str, exc: BaseException | None = None
    ) -> None:
        """Dead-letter a job whose envelope could be read."""
        tb = ""
        if exc is not None and not isinstance(exc, Retry | Reject | trio.TooSlowError):
            tb = "".join(traceback.format_exception(exc, limit=8))
        fields = _deadletters.job_fields(env, error_type, error, traceback=tb)
        if error_type in ("DecodeError", "UnknownMessageType", "Reject"):
            log.error(
                "job %s on queue %s dead-lettered: %s: %s",
                env.job_id,
                self._settings.name,
                error_type,
                error,
            )
        await self._dead_letter(env.entry_id, fields)

    async def dead_raw(
        self, entry_id: str, fields: Mapping[Any, Any], error_type: str, error: str
    ) -> None:
        """Dead-letter an entry whose envelope is malformed, keeping its raw fields."""
        await self._dead_letter(entry_id, _deadletters.raw_fields(fields, error_type, error))

    async def _dead_letter(self, entry_id: str, fields: dict[str, str]) -> None:
        ctx = self._ctx
        job_id = fields.get(F_ID, entry_id)
        doc = _deadletters.failure_outcome(fields)
        stamped = _deadletters.stamped(
            fields, queue=self._settings.name, worker=ctx.member_id, source_id=entry_id
        )
        ok = await self._settle(
            "dead-letter",
            scripts.dead(
                self._keys,
                consumer=ctx.member_id,
                entry_id=entry_id,
                job_id=job_id,
                result_ttl_ms=int(self._settings.result_ttl * 1000),
                outcome=doc,
                fields=stamped,
                events_max=self._acker.events_max,
            ),
        )
        if ok:
            self._stats.dead += 1
            self._acker.note()
        else:
            report_fenced(self._stats, self._settings.name, entry_id, "dead-letter")

    def failed_in_place(self, env: Envelope, exc: BaseException) -> None:
        """An ordered queue's attempt failed, to run again in place (no script moves
        it): count it, and write its event with the acker's next call."""
        self._stats.failed += 1
        error_type, error = self.describe(exc, self._settings.timeout)
        self._acker.event("failed", env.job_id, env.attempt, error_type, error)

    def retrying_in_place(self, env: Envelope) -> None:
        """The next attempt of ``env`` runs in place now."""
        self._stats.retried += 1
        self._acker.note()
        self._acker.event("retrying", env.job_id, env.attempt + 1)

    async def progress(self, job: JobContext, value: Any) -> bool:
        """Store ``value`` as the running job's progress (and its event) while this
        consumer still owns the entry; False when it does not (fenced)."""
        doc = orjson.dumps(self._ctx.app.converter.unstructure(value))
        await self._acker.write_events()  # its 'started' event first
        call = scripts.progress(
            self._keys,
            consumer=self._ctx.member_id,
            entry_id=job.entry_id,
            job_id=job.job_id,
            attempt=job.attempt,
            value=doc,
            ttl_ms=max(int(self._settings.result_ttl * 1000), PROGRESS_TTL_MS),
            events_max=self._acker.events_max,
        )
        return await self._settle("progress", call)

    async def _settle(self, what: str, call: scripts.Call[Any]) -> bool:
        await self._acker.write_events()  # the job's earlier events first
        redis = self._ctx.redis
        res = await self._ctx.outage.call(what, lambda: scripts.run(redis, call))
        return bool(res)
