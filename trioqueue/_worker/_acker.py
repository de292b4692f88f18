"""The acker: settles finished jobs in batches, one script call per batch.

Finished jobs go on a list; the acker wakes, lets the other jobs finishing in the
same scheduling round add theirs, and acknowledges everything on it, up to
``ACK_BATCH`` jobs per call. While one call is in flight the next batch builds up, so
batches grow with load and an idle worker acknowledges at once; there is no timer.

Cancellation: ``run`` ends when the consumer's loops are cancelled; the consumer
calls ``flush`` once more, shielded by its own timeout, after its jobs drained.

Error handling: a lost connection is retried with backoff until the batch gets
through (the jobs ran: their outcome must not be lost); an entry no longer ours is
reported as fenced.

Signals: the same call adds the batch's totals to the minute's history (succeeded and
cancelled counted by the script; failed, retried and dead taken from the consumer's
statistics since the last call; handler time added up by the runner: a few
``HINCRBY`` per batch, never one per job) and writes the queue's job events, first
the ones no other script writes (``started``, retries in place). A call carrying only
totals or such events settles no job.
"""

from __future__ import annotations

import time

import trio

from trioqueue import _scripts as scripts
from trioqueue._keys import PartitionKeys
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._inflight import InFlight
from trioqueue._worker._stats import ConsumerStats, report_fenced

__all__ = ["ACK_BATCH", "Acker"]

ACK_BATCH = 500


class Acker:
    """Batches the acknowledgements of one consumer."""

    def __init__(
        self,
        ctx: WorkerContext,
        keys: PartitionKeys,
        inflight: InFlight,
        stats: ConsumerStats,
        *,
        result_ttl: float,
        events_max: int = 0,
    ) -> None:
        self._ctx = ctx
        self._keys = keys
        self._inflight = inflight
        self._stats = stats
        self._result_ttl_ms = int(result_ttl * 1000)
        self.events_max = events_max
        self._acks: list[scripts.AckItem] = []
        # Totals for the history since the last call (handler time in seconds), and
        # the events to write first since then (only with events on).
        self._counted = (0, 0, 0)  # failed, retried, dead: the statistics last written
        self._handler_s = 0.0
        self._started: list[scripts.Started] = []
        # Entries settled as cancelled (counted apart from the ones that succeeded).
        self._cancelled: set[str] = set()
        self._wanted = trio.Event()
        self._lock = trio.Lock()

    def add(
        self,
        entry_id: str,
        job_id: str,
        outcome: bytes | None,
        unique: bool,
        attempt: int = 1,
        *,
        cancelled: bool = False,
    ) -> None:
        """Queue a finished job's acknowledgement (and its outcome document);
        ``cancelled``: it is settled as cancelled, not as succeeded."""
        self._acks.append((entry_id, job_id, outcome, unique, attempt))
        if cancelled:
            self._cancelled.add(entry_id)
        self._inflight.unacked.add(entry_id)
        self._wanted.set()

    def timed(self, seconds: float) -> None:
        """Add one handler run's time to the history (written with the next call)."""
        self._handler_s += seconds

    def note(self) -> None:
        """Jobs were settled apart (retried, dead-lettered) or failed: add them to the
        history soon (the counts are the consumer's statistics since the last call)."""
        if self._ctx.history_ttl_ms > 0:
            self._wanted.set()

    def started(self, job_id: str, attempt: int) -> None:
        """A job started: write its ``started`` event with the next call."""
        self.event("started", job_id, attempt)

    def event(
        self, kind: str, job_id: str, attempt: int, error_type: str = "", error: str = ""
    ) -> None:
        """Write an event no other script writes (a job started, an attempt retried in
        place) with the next call, when the queue has events on."""
        if self.events_max:
            self._started.append((kind, job_id, attempt, error_type, error))
            self._wanted.set()

    async def write_events(self) -> None:
        """Write pending ``started`` events now, before an event another script writes
        (progress, retry, dead letter), so that each job's events keep their order
        (waiting for a call in flight too: it may carry them)."""
        if self.events_max and (self._started or self._lock.locked()):
            await self.flush()

    def _counts(self) -> tuple[int, int, int]:
        stats = self._stats
        return stats.failed, stats.retried, stats.dead

    def _pending(self) -> bool:
        return bool(
            self._acks
            or self._started
            or (self._ctx.history_ttl_ms > 0 and self._counts() != self._counted)
        )

    def _signals(self) -> scripts.Signals:
        """The totals and events gathered since the last call (then reset)."""
        ctx = self._ctx
        counts = self._counts()
        then = self._counted
        failed, retried, dead = (counts[0] - then[0], counts[1] - then[1], counts[2] - then[2])
        self._counted = counts
        tally = scripts.Tally(failed, retried, dead, round(self._handler_s * 1000))
        self._handler_s -= tally.handler_ms / 1000  # keep the rounding remainder
        started, self._started = self._started, []
        return scripts.Signals(
            history_minute=int(time.time() // 60),
            history_ttl_ms=ctx.history_ttl_ms,
            events_max=self.events_max,
            tally=tally,
            started=started,
        )

    async def run(self) -> None:
        """Acknowledge whatever finished, as soon as the current round ends."""
        while True:
            await self._wanted.wait()
            # Let the other handlers finishing in this scheduling round add their
            # acks, so one script call settles the whole round.
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            self._wanted = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Acknowledge everything queued now, in batches of ``ACK_BATCH``."""
        ctx = self._ctx
        async with self._lock:
            while self._pending():
                batch, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
                cancelled_n = 0
                if self._cancelled:
                    # The script counts the last ``cancelled_n`` jobs as cancelled.
                    kept = [a for a in batch if a[0] not in self._cancelled]
                    cancelled_n = len(batch) - len(kept)
                    batch = kept + [a for a in batch if a[0] in self._cancelled]
                ack = scripts.ack(
                    self._keys,
                    consumer=ctx.member_id,
                    result_ttl_ms=self._result_ttl_ms,
                    jobs=batch,
                    cancelled=cancelled_n,
                    signals=self._signals(),
                )
                attempts = 0

                async def call(ack: scripts.Call[scripts.Acked] = ack) -> scripts.Acked:
                    nonlocal attempts
                    attempts += 1
                    return await scripts.run(ctx.redis, ack)

                acked = await ctx.outage.call("acknowledge", call)
                fenced = set(acked.fenced)
                if attempts == 1:
                    # First try: an entry no longer pending was settled by someone else.
                    fenced.update(acked.gone)
                # (On a retry it may be our own first call, whose reply was lost.)
                cancelled = 0
                for entry_id, *_ in batch:
                    self._inflight.unacked.discard(entry_id)
                    if entry_id in fenced:
                        report_fenced(self._stats, self._keys.queue, entry_id, "acknowledgement")
                    elif self._cancelled and entry_id in self._cancelled:
                        cancelled += 1
                if self._cancelled:
                    self._cancelled.difference_update(item[0] for item in batch)
                self._inflight.signal()
                self._stats.cancelled += cancelled
                self._stats.succeeded += len(batch) - len(fenced) - cancelled
                if batch:
                    ctx.progress(len(batch))
