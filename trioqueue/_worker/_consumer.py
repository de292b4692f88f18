"""One consumer: a partition's fetcher, job runner, acker and renewer, wired together.

    consumer (own nursery)
    ├── fetcher    XREADGROUP for the free slots only (recovery before reads)
    ├── acker      acknowledges finished jobs in batches, one script call each
    ├── renewer    renews running jobs' entries; notices jobs taken over
    └── handlers   concurrency runner tasks (runner), one job at a time each

A shared queue's partition is read through the consumer group by every worker; an
ordered queue's owned partition is composed of other parts: a fenced reader (take
over, then reads checked against the lease), key order (one job per key) and
retries in place.

Cancellation: a drain (shutdown or revoked partition) stops the fetcher; running
jobs get until the drain deadline, then their scopes are cancelled and their
entries stay pending for another worker. The last acknowledgements are written
within ``settle_timeout``.

Error handling: each part classifies its own errors (see its module); the consumer
group is created through outages before anything else starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from trioqueue import _scripts as scripts
from trioqueue._config import QueueSettings
from trioqueue._keys import PartitionKeys
from trioqueue._worker._acker import Acker
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._fenced_reader import FencedReader
from trioqueue._worker._fetcher import Fetcher, Reader, SharedReader
from trioqueue._worker._inflight import Dispatch, InFlight
from trioqueue._worker._key_order import KeyOrder
from trioqueue._worker._recovery import Recovery
from trioqueue._worker._renewer import Renewer
from trioqueue._worker._retry_in_place import RetryInPlace
from trioqueue._worker._runner import Runner
from trioqueue._worker._settle import Settler
from trioqueue._worker._stats import ConsumerStatistics, ConsumerStats

__all__ = ["Consumer"]

log = logging.getLogger("trioqueue.worker.consumer")


class Consumer:
    """Consumes one partition of one queue.

    Build one with ``Consumer.shared`` or ``Consumer.ordered``; run it with
    ``await nursery.start(consumer.run)`` (ready: its consumer group exists).
    """

    def __init__(self, ctx: WorkerContext, settings: QueueSettings, partition: int) -> None:
        self._ctx = ctx
        self.settings = settings
        self.keys = PartitionKeys(ctx.prefix, settings.name, partition)
        self.stats = ConsumerStats()
        self.inflight = InFlight(settings.concurrency)
        self._revoked_at: float | None = None
        self._acker = Acker(
            ctx,
            self.keys,
            self.inflight,
            self.stats,
            result_ttl=settings.result_ttl,
            events_max=settings.events_max_length if settings.events else 0,
        )
        self._settler = Settler(
            ctx, self.keys, settings, self.stats, self._acker, poke_scheduler=ctx.poke_scheduler
        )
        self._renewer = Renewer(
            ctx,
            self.keys,
            self.inflight,
            self.stats,
            visibility_timeout=settings.visibility_timeout,
        )
        self._key_order: KeyOrder | None = None
        self.runner: Runner
        self._fetcher: Fetcher

    @classmethod
    def shared(cls, ctx: WorkerContext, settings: QueueSettings, partition: int) -> Consumer:
        """A consumer of a shared queue's partition (read by every worker)."""
        self = cls(ctx, settings, partition)
        self.runner = Runner(ctx, settings, self.keys, self.inflight, self._settler, self._acker)
        recovery = Recovery(
            ctx, settings, self.keys, self.inflight, self.stats, self.runner.dispatch
        )
        reader = SharedReader(ctx, self.keys, self.inflight)
        self._fetcher = self._make_fetcher(reader, self.runner.dispatch, recovery, lambda: False)
        return self

    @classmethod
    def ordered(
        cls, ctx: WorkerContext, settings: QueueSettings, partition: int, token: str
    ) -> Consumer:
        """A consumer of an owned partition of an ordered queue, under lease ``token``."""
        self = cls(ctx, settings, partition)
        epoch = int(token.rsplit(":", 1)[1])
        self.runner = Runner(
            ctx,
            settings,
            self.keys,
            self.inflight,
            self._settler,
            self._acker,
            epoch=epoch,
            checkpoint_first=True,
        )
        self.runner.on_failure = RetryInPlace(
            settings, self.inflight, self.stats, self._settler, stopping=self.stopping
        )
        order = self._key_order = KeyOrder(
            self.inflight,
            self.runner.dispatch,
            self.runner.dispatch_envelope,
            stopping=self.stopping,
        )
        reader = FencedReader(ctx, settings, self.keys, self.stats, token=token, revoke=self.revoke)

        def holding() -> bool:
            return order.holding() or reader.holding()

        self._fetcher = self._make_fetcher(reader, order.dispatch, None, holding)
        return self

    def _make_fetcher(
        self,
        reader: Reader,
        dispatch: Dispatch,
        recovery: Recovery | None,
        holding: Callable[[], bool],
    ) -> Fetcher:
        return Fetcher(
            self._ctx,
            self.keys,
            self.inflight,
            reader,
            dispatch,
            self._acker,
            recovery=recovery,
            holding=holding,
            stopping=self.stopping,
            revoke=self.revoke,
            ensure_group=self._ensure_group,
        )

    # ----------------------------------------------------------------- control

    def stopping(self) -> bool:
        """Whether to stop fetching: the worker shuts down or the partition was revoked."""
        return self._revoked_at is not None or self._ctx.shutdown.requested

    @property
    def drain_deadline(self) -> float:
        """When running jobs are cancelled once fetching stopped."""
        if self._revoked_at is not None:
            return min(self._revoked_at, self._ctx.shutdown.deadline)
        return self._ctx.shutdown.deadline

    def revoke(self, deadline: float) -> None:
        """Stop fetching and drain running jobs by ``deadline`` (trio clock)."""
        if self._revoked_at is None:
            self._revoked_at = deadline
            self.inflight.signal()

    def wake(self) -> None:
        """Make the fetcher look at ``stopping()`` again (a shutdown began)."""
        self.inflight.signal()

    def cancel_job(self, job_id: str) -> bool:
        """Cancel the running job ``job_id`` if this consumer runs it."""
        return self.inflight.cancel_job(job_id)

    def statistics(self) -> ConsumerStatistics:
        """A snapshot of this consumer's counters."""
        inflight = self.inflight
        return ConsumerStatistics.of(
            self.stats, running=len(inflight.running), max_running=inflight.max_running
        )

    # ----------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume until drained (see the module docstring), then return."""
        ctx = self._ctx
        await ctx.outage.call("create consumer group", self._ensure_group)
        log.info(
            "queue %s attached (concurrency %d, stream %s)",
            self.settings.name,
            self.inflight.capacity,
            self.keys.stream,
        )
        async with trio.open_nursery() as loops:
            loops.start_soon(self._acker.run)
            loops.start_soon(self._renewer.run)
            async with trio.open_nursery() as handlers:
                self.runner.start(handlers)
                if self._key_order is not None:
                    self._key_order.attach(handlers)
                task_status.started()
                await self._fetcher.run()
                # Shutdown: run partial batches now instead of after their interval.
                self.runner.flush_batches()
                with trio.move_on_at(self.drain_deadline):
                    while self.inflight.running:
                        await self.inflight.wait_change()
                if self.inflight.running:
                    log.warning(
                        "queue %s: %d jobs still running after shutdown_grace; cancelling "
                        "them (they stay pending and will be redelivered)",
                        self.settings.name,
                        len(self.inflight.running),
                    )
                handlers.cancel_scope.cancel()
            with trio.move_on_after(ctx.settle_timeout):
                await self._acker.flush()
            loops.cancel_scope.cancel()

    async def _ensure_group(self) -> None:
        # A script (see ensure_group.lua) so that it also works on a full server.
        await scripts.run(self._ctx.redis, scripts.ensure_group(self.keys))
