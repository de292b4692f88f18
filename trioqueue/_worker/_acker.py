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
"""

from __future__ import annotations

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
    ) -> None:
        self._ctx = ctx
        self._keys = keys
        self._inflight = inflight
        self._stats = stats
        self._result_ttl_ms = int(result_ttl * 1000)
        self._acks: list[scripts.AckItem] = []
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
        *,
        cancelled: bool = False,
    ) -> None:
        """Queue a finished job's acknowledgement (and its outcome document);
        ``cancelled``: it is settled as cancelled, not as succeeded."""
        self._acks.append((entry_id, job_id, outcome, unique))
        if cancelled:
            self._cancelled.add(entry_id)
        self._inflight.unacked.add(entry_id)
        self._wanted.set()

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
            while self._acks:
                batch, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
                ack = scripts.ack(
                    self._keys,
                    consumer=ctx.member_id,
                    result_ttl_ms=self._result_ttl_ms,
                    jobs=batch,
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
                for entry_id, _, _, _ in batch:
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
                ctx.progress(len(batch))
