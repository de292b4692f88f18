"""Ordered queues: one owner per partition, jobs of a key one at a time in send order.

    OrderedQueue (one per ordered queue, in the supervisor's nursery)
    ├── rebalance: every heartbeat interval, compute the assignment (``_assign.py``),
    │              acquire the partitions assigned here, revoke the others
    └── per owned partition: a cancel scope whose deadline is the lease's expiry
        └── OrderedConsumer — a Consumer that reads only while it holds the lease,
            runs one job per key at a time and retries in place (holding the key)

The lease deadline is the heart of the fencing: renewals push the scope's deadline
forward; when they stop (we were paused, or cut off) the deadline passes and Trio
cancels every job of the partition before any of them can resume, so a paused owner
cannot run, acknowledge or reorder work once its lease may have passed to another.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import trio

from trioqueue._app import Handler
from trioqueue._assign import assign
from trioqueue._config import QueueSettings
from trioqueue._envelope import Envelope, EnvelopeError
from trioqueue._errors import Reject, Retry
from trioqueue._keys import GROUP, PartitionKeys, member_key, members_key
from trioqueue._worker._consumer import Consumer

if TYPE_CHECKING:
    from trioqueue._worker._supervisor import Supervisor

log = logging.getLogger("trioqueue")

# How long before the server-side expiry we stop trusting our lease.
LEASE_MARGIN = 0.25


class OrderedConsumer(Consumer):
    """Consumes one owned partition of an ordered queue."""

    def __init__(
        self, sup: Supervisor, settings: QueueSettings, partition: int, token: str
    ) -> None:
        super().__init__(sup, settings, partition)
        self.token = token
        self.epoch = int(token.rsplit(":", 1)[1])
        # Per key: entries waiting for the key's running job to settle, in stream order.
        self._waiting: dict[str, deque[tuple[str, Mapping[Any, Any], int]]] = {}
        self._active: dict[str, str] = {}  # key -> entry id being run or settled
        self._deliveries: dict[str, int] = {}
        self._release = trio.Event()
        self._releaser_started = False
        self._claimed_all = False
        self.order_log: list[str] = []

    # ------------------------------------------------------------------ reading

    async def _read(self, count: int) -> list[tuple[str, Mapping[Any, Any]]]:
        sup = self.sup
        if not self._claimed_all:
            # Whatever the previous owner left pending comes first, in stream order.
            await self._recover()
            self._claimed_all = True
        res: Any = await sup.scripts.ordered_fetch(
            keys=[self.keys.stream, self.keys.lease],
            args=[GROUP, sup.member_id, self.token, count],
        )
        sup.outage.succeeded()
        entries, newest = res
        if entries:
            return [(_text(e[0]), dict(zip(e[1][::2], e[1][1::2], strict=True))) for e in entries]
        # Nothing new: block on a plain XREAD (it takes nothing) until an entry newer
        # than the newest one arrives, then read it through the fenced script.
        await sup.redis.xread({self.keys.stream: _text(newest)}, count=1, block=sup.block_ms)
        return []

    async def _fetch_failed(self, exc: Exception) -> None:
        if "FENCED" in str(exc):
            log.warning(
                "queue %s partition %d: lease lost; stopping this partition",
                self.settings.name,
                self.keys.partition,
            )
            self.revoke(trio.current_time())
            return
        await super()._fetch_failed(exc)

    async def _recover(self) -> None:
        # As the lease owner, anything pending for another consumer is stale: its
        # owner lost the partition (released, died, or was paused past the lease).
        while self._free > 0:
            if not await self._reclaim(owner="", min_idle_ms=0):
                return

    async def _burst_done(self) -> bool:
        if self._waiting:
            return False
        return await super()._burst_done()

    # ------------------------------------------------------------------ key order

    def _dispatch(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        try:
            key = Envelope.from_entry(entry_id, fields).key
        except EnvelopeError:
            key = ""
        self._deliveries[entry_id] = deliveries
        if not key:
            super()._dispatch(entry_id, fields, deliveries)
            return
        if not self._releaser_started:
            self._releaser_started = True
            self._handlers.start_soon(self._releaser)
        if key in self._active or key in self._waiting:
            # Held in memory (and in our pending list) until the key is free; it
            # takes a capacity slot so the fetcher does not hoard.
            self._free -= 1
            self._waiting.setdefault(key, deque()).append((entry_id, fields, deliveries))
            return
        self._active[key] = entry_id
        self.order_log.append(entry_id)
        super()._dispatch(entry_id, fields, deliveries)

    async def _releaser(self) -> None:
        """Start a key's next job once the previous one settled (acked, retried in
        place, or dead-lettered) — not merely finished."""
        while True:
            await self._release.wait()
            self._release = trio.Event()
            for key, entry_id in list(self._active.items()):
                if entry_id in self.running or entry_id in self._unacked:
                    continue
                del self._active[key]
                queue = self._waiting.get(key)
                if not queue or self.stopping():
                    continue
                next_id, fields, deliveries = queue.popleft()
                if not queue:
                    del self._waiting[key]
                self._free += 1  # the waiting slot becomes the running slot
                self._active[key] = next_id
                self.order_log.append(next_id)
                super()._dispatch(next_id, fields, deliveries)

    def _signal(self) -> None:
        super()._signal()
        self._release.set()

    async def _flush(self) -> None:
        await super()._flush()
        self._release.set()

    # ------------------------------------------------------------------ retries

    async def _failed(self, env: Envelope, handler: Handler[Any], exc: BaseException) -> None:
        """Retry in place: the job keeps its key (later jobs of the key wait) and its
        pending entry, so order holds across retries."""
        if isinstance(exc, Reject) or env.attempt > self.settings.retries:
            await super()._failed(env, handler, exc)
            return
        if isinstance(exc, Retry):
            delay = exc.delay
        else:
            delay = self.settings.backoff.delay(env.attempt, random.random())
            log.warning(
                "job %s (%s) attempt %d on ordered queue %s failed, retrying in %.2fs "
                "(its key waits): %s: %s",
                env.job_id,
                env.type_name,
                env.attempt,
                self.settings.name,
                delay,
                type(exc).__name__,
                exc,
            )
        await trio.sleep(delay)
        running = self.running.get(env.entry_id)
        if running is None or running.fenced or self.stopping():
            return  # left pending: the next owner (or our next start) retries it
        again = attrs.evolve(env, attempt=env.attempt + 1)
        running.envelope = again
        running.scope = trio.CancelScope()
        self.stats.retried += 1
        await self._run_job(again, running.scope, self._deliveries.get(env.entry_id, 1))


@attrs.define
class _Owned:
    consumer: OrderedConsumer
    scope: trio.CancelScope
    token: str


class OrderedQueue:
    """Owns, acquires and releases the partitions of one ordered queue."""

    def __init__(self, sup: Supervisor, settings: QueueSettings) -> None:
        self.sup = sup
        self.settings = settings
        self.owned: dict[int, _Owned] = {}
        self.finished: list[_Owned] = []  # partitions this worker owned and gave up
        self.partitions = settings.partitions
        self.assignment: dict[int, str] = {}
        self._wake = trio.Event()

    def keys(self, partition: int) -> PartitionKeys:
        return PartitionKeys(self.sup.prefix, self.settings.name, partition)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while not self.sup.is_stopping():
                if self.sup.burst and not self.owned and await self._drained():
                    return
                try:
                    await self.rebalance()
                except Exception as exc:
                    from trioqueue._connection import is_connection_error

                    if not is_connection_error(exc):
                        raise
                    self.sup.outage.failed("rebalance", exc)
                with trio.move_on_after(self.sup.worker.heartbeat_interval):
                    await self._wake.wait()
                self._wake = trio.Event()
            # Shutdown: each owned consumer drains (it sees sup.is_stopping()) and
            # releases its lease when it returns.

    async def _drained(self) -> bool:
        for p in range(self.partitions):
            keys = self.keys(p)
            if await self.sup.redis.xlen(keys.stream) or await self.sup.redis.zcard(keys.delayed):
                return False
        return True

    def wake(self) -> None:
        self._wake.set()

    async def live_members(self) -> list[str]:
        """Members whose heartbeat is current and who consume this queue."""
        sup = self.sup
        now_ms = int((await sup.server_now()).timestamp() * 1000)
        ids: Any = await sup.redis.zrangebyscore(members_key(sup.prefix), now_ms, float("inf"))
        out = []
        for raw in ids or ():
            member = _text(raw)
            if member == sup.member_id:
                out.append(member)
                continue
            info = await sup.redis.get(member_key(sup.prefix, member))
            if info is not None and self.settings.name in orjson.loads(info).get("queues", []):
                out.append(member)
        if sup.member_id not in out:
            out.append(sup.member_id)
        return out

    async def rebalance(self) -> None:
        sup = self.sup
        members = await self.live_members()
        current: dict[int, str | None] = {}
        for p in range(self.partitions):
            token = await sup.redis.get(self.keys(p).lease)
            current[p] = _text(token).rsplit(":", 1)[0] if token is not None else None
        self.assignment = assign(range(self.partitions), members, current)
        for p, member in sorted(self.assignment.items()):
            if member == sup.member_id and p not in self.owned and not sup.is_stopping():
                await self._acquire(p)
        grace = sup.worker.shutdown_grace
        for p, owned in list(self.owned.items()):
            if self.assignment.get(p) != sup.member_id:
                log.info(
                    "queue %s partition %d: moving to %s; draining it here",
                    self.settings.name,
                    p,
                    self.assignment.get(p),
                )
                owned.consumer.revoke(trio.current_time() + grace)

    async def _acquire(self, partition: int) -> None:
        sup = self.sup
        keys = self.keys(partition)
        ttl = sup.worker.heartbeat_ttl
        sent = trio.current_time()
        token: Any = await sup.scripts.lease_acquire(
            keys=[keys.lease, keys.epoch], args=[sup.member_id, int(ttl * 1000)]
        )
        if not token:
            return  # still held by its previous owner: it drains, or its lease expires
        token = _text(token)
        await self._nursery.start(self._own, partition, token, sent + ttl - LEASE_MARGIN)

    async def _own(
        self,
        partition: int,
        token: str,
        deadline: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        sup = self.sup
        consumer = OrderedConsumer(sup, self.settings, partition, token)
        lost = False
        with trio.CancelScope(deadline=deadline) as scope:
            self.owned[partition] = _Owned(consumer, scope, token)
            log.info(
                "queue %s partition %d: acquired (epoch %d)",
                self.settings.name,
                partition,
                consumer.epoch,
            )
            try:
                await consumer.run(task_status=task_status)
            finally:
                lost = scope.cancelled_caught or scope.cancel_called
                done = self.owned.pop(partition, None)
                if done is not None:
                    self.finished.append(done)
        if not lost:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await sup.scripts.lease_release(keys=[self.keys(partition).lease], args=[token])
                except Exception as exc:
                    log.warning("could not release lease of partition %d: %s", partition, exc)
            log.info("queue %s partition %d: released", self.settings.name, partition)
        else:
            log.warning(
                "queue %s partition %d: lease lost or expired; its jobs were cancelled",
                self.settings.name,
                partition,
            )
        self.wake()

    async def renew(self) -> None:
        """Renew every owned lease (called from the heartbeat loop)."""
        sup = self.sup
        ttl = sup.worker.heartbeat_ttl
        for p, owned in list(self.owned.items()):
            sent = trio.current_time()
            ok: Any = await sup.scripts.lease_renew(
                keys=[self.keys(p).lease], args=[owned.token, int(ttl * 1000)]
            )
            if int(ok):
                owned.scope.deadline = max(owned.scope.deadline, sent + ttl - LEASE_MARGIN)
            else:
                log.warning(
                    "queue %s partition %d: lease was taken over; cancelling its jobs now",
                    self.settings.name,
                    p,
                )
                owned.scope.cancel()

    def signal(self) -> None:
        for owned in self.owned.values():
            owned.consumer._signal()
        self.wake()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
