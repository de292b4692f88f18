"""The renewer: keeps running jobs' entries fresh and notices jobs taken over.

It renews all running jobs of a partition in one script call (up to ``ACK_BATCH``)
every ``min(visibility_timeout / 3, heartbeat_interval)``, and at once when the
heartbeat loop finds that this worker's heartbeat had lapsed. The same call reports
entries another member claimed (their jobs are cancelled here: fenced) and jobs a
client asked to cancel while the control message may have been missed.

Cancellation: ``run`` ends when the consumer's loops are cancelled.

Error handling: a lost connection is reported to the outage tracker and the
renewal waits for its next period.
"""

from __future__ import annotations

import trio

from trioqueue import _scripts as scripts
from trioqueue._keys import PartitionKeys
from trioqueue._worker._acker import ACK_BATCH
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._inflight import InFlight
from trioqueue._worker._outage import repeat
from trioqueue._worker._stats import ConsumerStats, report_fenced

__all__ = ["Renewer"]


class Renewer:
    """Renews the entries of one consumer's running jobs."""

    def __init__(
        self,
        ctx: WorkerContext,
        keys: PartitionKeys,
        inflight: InFlight,
        stats: ConsumerStats,
        *,
        visibility_timeout: float,
    ) -> None:
        self._ctx = ctx
        self._keys = keys
        self._inflight = inflight
        self._stats = stats
        # Renew well inside the visibility timeout and at least every few heartbeats,
        # so a job taken over while we were paused is noticed quickly.
        self._period = min(visibility_timeout / 3, ctx.worker.heartbeat_interval)

    async def run(self) -> None:
        """Renew every period, or at once after a heartbeat lapse."""

        async def step() -> float:
            with trio.move_on_after(self._period):
                await self._ctx.liveness.wait_lapse()
            await self.renew()
            return 0.0

        # On a lost connection the next renewal simply waits for its period.
        await repeat("renew", step, self._ctx.outage, max_wait=0.0)

    async def renew(self) -> None:
        """Renew every running job's entry once; cancel the ones no longer ours."""
        ctx, inflight = self._ctx, self._inflight
        ids = [i for i, r in inflight.running.items() if not r.fenced]
        for start in range(0, len(ids), ACK_BATCH):
            chunk = [
                (i, inflight.running[i].envelope.job_id)
                for i in ids[start : start + ACK_BATCH]
                if i in inflight.running
            ]
            touch = scripts.touch(self._keys, consumer=ctx.member_id, entries=chunk)
            touched = await scripts.run(ctx.redis, touch)
            for entry_id in touched.lost:
                running = inflight.running.get(entry_id)
                if running is not None and not running.fenced:
                    running.fenced = True
                    running.interrupt()
                    report_fenced(self._stats, self._keys.queue, entry_id, "renewal")
            for entry_id in touched.cancel:
                running = inflight.running.get(entry_id)
                if running is not None:
                    inflight.cancel_job(running.envelope.job_id)
