"""Ordered queues: the rebalance loop and the partitions this worker owns.

    OrderedQueue.run (one per ordered queue, in the consumers nursery)
    ├── rebalance: every heartbeat interval, compute the assignment (``_assign.py``),
    │              acquire the partitions assigned here, revoke the others
    └── owned partition: a cancel scope whose deadline is the lease's expiry
        └── consumer (``Consumer.ordered``): fenced reads, one job per key,
            retries in place

The lease deadline is the heart of the fencing: renewals (from the heartbeat loop)
push the scope's deadline forward; when they stop (we were paused, or cut off) the
deadline passes and Trio cancels every job of the partition before any of them can
resume, so a paused owner cannot run, acknowledge or reorder work once its lease may
have passed to another.

Cancellation: at shutdown the loop stops acquiring; each owned consumer drains and
its lease is released when it returns. A lease that was lost is not released.

Error handling: a lost connection is reported once per outage and the rebalance is
retried at the next interval; other errors propagate.
"""

from __future__ import annotations

import logging

import attrs
import orjson
import trio

from trioqueue import _scripts as scripts
from trioqueue._assign import assign
from trioqueue._config import QueueSettings
from trioqueue._connection import as_text
from trioqueue._keys import PartitionKeys, member_key, members_key
from trioqueue._worker._consumer import Consumer
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._outage import repeat
from trioqueue._worker._stats import ConsumerStatistics

__all__ = ["LEASE_MARGIN", "OrderedQueue"]

log = logging.getLogger("trioqueue.worker.rebalance")

# How long before the server-side expiry we stop trusting our lease.
LEASE_MARGIN = 0.25


@attrs.define(eq=False)
class _Owned:
    consumer: Consumer
    scope: trio.CancelScope
    token: str


class OrderedQueue:
    """Owns, acquires and releases the partitions of one ordered queue."""

    def __init__(self, ctx: WorkerContext, settings: QueueSettings) -> None:
        self._ctx = ctx
        self.settings = settings
        self.owned: dict[int, _Owned] = {}
        # Totals of the partitions this worker owned and gave up (for burst summaries).
        self._finished = ConsumerStatistics()
        self.partitions = settings.partitions
        self.assignment: dict[int, str] = {}
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None

    def keys(self, partition: int) -> PartitionKeys:
        """The keys of one of this queue's partitions."""
        return PartitionKeys(self._ctx.prefix, self.settings.name, partition)

    def statistics(self) -> ConsumerStatistics:
        """Counters of every partition owned here, now or earlier, summed."""
        now = [o.consumer.statistics() for o in self.owned.values()]
        return ConsumerStatistics.total([self._finished, *now])

    def consumers(self) -> list[Consumer]:
        """The consumers of the partitions owned right now."""
        return [o.consumer for o in self.owned.values()]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Rebalance every heartbeat interval until the worker stops."""
        ctx = self._ctx
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()

            first = True

            async def step() -> float | None:
                nonlocal first
                if not first:  # after each rebalance, failed or not
                    await self._wait()
                first = False
                if ctx.shutdown.requested:
                    return None
                if ctx.burst and not self.owned and await self._drained():
                    return None
                await self.rebalance()
                return 0.0

            await repeat("rebalance", step, ctx.outage, max_wait=0.0)
            # Shutdown: each owned consumer drains (it sees the shutdown) and releases
            # its lease when it returns.

    async def _wait(self) -> None:
        with trio.move_on_after(self._ctx.worker.heartbeat_interval):
            await self._wake.wait()
        self._wake = trio.Event()

    async def _drained(self) -> bool:
        redis = self._ctx.redis
        for p in range(self.partitions):
            keys = self.keys(p)
            if await redis.xlen(keys.stream) or await redis.zcard(keys.delayed):
                return False
        return True

    def wake(self) -> None:
        """Rebalance now (a partition was released, or the partition count grew)."""
        self._wake.set()

    def signal(self) -> None:
        """Wake every owned consumer and the loop (a shutdown began)."""
        for owned in self.owned.values():
            owned.consumer.wake()
        self.wake()

    async def live_members(self) -> list[str]:
        """Members whose heartbeat is current and who consume this queue."""
        ctx = self._ctx
        now_ms = int((await ctx.server_now()).timestamp() * 1000)
        ids = await ctx.redis.zrangebyscore(members_key(ctx.prefix), now_ms, "+inf")
        out = []
        for raw in ids or ():
            member = as_text(raw)
            if member == ctx.member_id:
                out.append(member)
                continue
            info = await ctx.redis.get(member_key(ctx.prefix, member))
            if info is not None and self.settings.name in orjson.loads(info).get("queues", []):
                out.append(member)
        if ctx.member_id not in out:
            out.append(ctx.member_id)
        return out

    async def rebalance(self) -> None:
        """Acquire the partitions assigned to this worker; revoke the others."""
        ctx = self._ctx
        members = await self.live_members()
        current: dict[int, str | None] = {}
        for p in range(self.partitions):
            token = await ctx.redis.get(self.keys(p).lease)
            current[p] = as_text(token).rsplit(":", 1)[0] if token is not None else None
        self.assignment = assign(range(self.partitions), members, current)
        for p, member in sorted(self.assignment.items()):
            if member == ctx.member_id and p not in self.owned and not ctx.shutdown.requested:
                await self._acquire(p)
        grace = ctx.worker.shutdown_grace
        for p, owned in list(self.owned.items()):
            if self.assignment.get(p) != ctx.member_id and not owned.consumer.stopping():
                log.info(
                    "queue %s partition %d: moving to %s; draining it here",
                    self.settings.name,
                    p,
                    self.assignment.get(p),
                )
                owned.consumer.revoke(trio.current_time() + grace)

    async def _acquire(self, partition: int) -> None:
        ctx = self._ctx
        keys = self.keys(partition)
        ttl = ctx.worker.heartbeat_ttl
        sent = trio.current_time()
        acquire = scripts.lease_acquire(keys, member_id=ctx.member_id, ttl_ms=int(ttl * 1000))
        token = await scripts.run(ctx.redis, acquire)
        if token is None:
            return  # still held by its previous owner: it drains, or its lease expires
        assert self._nursery is not None
        deadline = sent + ttl - LEASE_MARGIN
        await self._nursery.start(self._own, partition, token, deadline)

    async def _own(
        self,
        partition: int,
        token: str,
        deadline: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        consumer = Consumer.ordered(self._ctx, self.settings, partition, token)
        name = self.settings.name
        lost = False
        with trio.CancelScope(deadline=deadline) as scope:
            self.owned[partition] = _Owned(consumer, scope, token)
            epoch = int(token.rsplit(":", 1)[1])
            log.info("queue %s partition %d: acquired (epoch %d)", name, partition, epoch)
            try:
                await consumer.run(task_status=task_status)
            finally:
                lost = scope.cancelled_caught or scope.cancel_called
                done = self.owned.pop(partition, None)
                if done is not None:
                    parts = [self._finished, done.consumer.statistics()]
                    self._finished = ConsumerStatistics.total(parts)
        if not lost:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    release = scripts.lease_release(self.keys(partition), token=token)
                    await scripts.run(self._ctx.redis, release)
                except Exception as exc:
                    log.warning("could not release lease of partition %d: %s", partition, exc)
            log.info("queue %s partition %d: released", name, partition)
        else:
            log.warning(
                "queue %s partition %d: lease lost or expired; its jobs were cancelled",
                name,
                partition,
            )
        self.wake()

    async def renew(self) -> None:
        """Renew every owned lease (called from the heartbeat loop)."""
        ctx = self._ctx
        ttl = ctx.worker.heartbeat_ttl
        for p, owned in list(self.owned.items()):
            if self.owned.get(p) is not owned:
                continue  # released while we renewed the others
            sent = trio.current_time()
            renew = scripts.lease_renew(self.keys(p), token=owned.token, ttl_ms=int(ttl * 1000))
            ok = await scripts.run(ctx.redis, renew)
            if self.owned.get(p) is not owned:
                continue  # released meanwhile: not ours to renew, nor lost
            if ok:
                owned.scope.deadline = max(owned.scope.deadline, sent + ttl - LEASE_MARGIN)
            else:
                log.warning(
                    "queue %s partition %d: lease was taken over; cancelling its jobs now",
                    self.settings.name,
                    p,
                )
                owned.scope.cancel()
