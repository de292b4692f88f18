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
from coredis.tokens import PureToken

from trioqueue._app import Handler
from trioqueue._assign import assign
from trioqueue._config import QueueSettings
from trioqueue._envelope import Envelope, EnvelopeError
from trioqueue._errors import Reject, Retry
from trioqueue._keys import GROUP, PartitionKeys, member_key, members_key
from trioqueue._worker._consumer import Consumer, ConsumerStats

if TYPE_CHECKING:
    from trioqueue._worker._supervisor import Supervisor

log = logging.getLogger("trioqueue")

# How long before the server-side expiry we stop trusting our lease.
LEASE_MARGIN = 0.25
# The most entries a new owner takes over in one step: far more than a partition's
# pending list holds (what its previous owners were running or holding back).
TAKEOVER_MAX = 100_000


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
        self._deliveries: dict[str, int] = {}  # entry id -> deliveries, while it runs
        self._release = trio.Event()
        self._releaser_started = False
        # Entries taken over from previous owners, in stream order, served before
        # anything new is read (None: not taken over yet), and their delivery counts.
        self._backlog: deque[tuple[str, Mapping[Any, Any]]] | None = None
        self._claimed: dict[str, int] = {}
        self._in_fetch = False

    # ------------------------------------------------------------------ reading

    async def _read(self, count: int) -> list[tuple[str, Mapping[Any, Any]]]:
        sup = self.sup
        if self._backlog is None:
            self._backlog = deque(await self._take_over())
        if self._backlog:
            return [self._backlog.popleft() for _ in range(min(count, len(self._backlog)))]
        self._in_fetch = True
        res: Any = await sup.scripts.ordered_fetch(
            keys=[self.keys.stream, self.keys.lease],
            args=[GROUP, sup.member_id, self.token, count],
        )
        self._in_fetch = False
        sup.outage.succeeded()
        entries, newest = res
        if entries:
            return [(_text(e[0]), dict(zip(e[1][::2], e[1][1::2], strict=True))) for e in entries]
        # Nothing new: block on a plain XREAD (it takes nothing) until an entry newer
        # than the newest one arrives, then read it through the fenced script.
        await sup.redis.xread({self.keys.stream: _text(newest)}, count=1, block=sup.block_ms)
        return []

    async def _fetch_failed(self, exc: Exception) -> None:
        from trioqueue._connection import is_connection_error

        fetching, self._in_fetch = self._in_fetch, False
        if "FENCED" in str(exc):
            log.warning(
                "queue %s partition %d: lease lost; stopping this partition",
                self.settings.name,
                self.keys.partition,
            )
            self.revoke(trio.current_time())
            return
        if fetching and is_connection_error(exc):
            # The read may have delivered entries whose reply never arrived: pending
            # here, unknown to us, older than whatever we would read next. Only a new
            # owner, running nothing yet, can tell them apart; give the partition up
            # (running jobs drain) and take it over afresh.
            log.warning(
                "queue %s partition %d: a read failed (%s); handing the partition over "
                "so that whatever it delivered runs in order",
                self.settings.name,
                self.keys.partition,
                exc,
            )
            self.revoke(trio.current_time() + self.sup.worker.shutdown_grace)
        await super()._fetch_failed(exc)

    async def _take_over(self) -> list[tuple[str, Mapping[Any, Any]]]:
        """Claim everything pending in the partition, in stream order.

        As the new lease owner, every pending entry is stale: its consumer lost the
        partition (released it, died, or was paused past its lease). That includes
        entries under our own name, left by our own earlier ownership (our lease
        expired while we were starved, say). All are taken in one step: claiming in
        rounds would meet our own fresh claims first and stop short, and whatever was
        left behind would run after newer jobs of its key. For the same reason
        suspects are not set apart to run alone (suspect_at 0): that would run them
        ahead of older entries. ``max_deliveries`` still dead-letters a job that
        keeps killing its owners.
        """
        sup = self.sup
        s = self.settings
        res: Any = await sup.scripts.reclaim(
            keys=[self.keys.stream, self.keys.dead],
            args=[
                GROUP,
                sup.member_id,
                0,
                TAKEOVER_MAX,
                "",
                s.max_deliveries,
                sup.member_id,
                int(s.result_ttl * 1000),
                0,
                "",
                "1",
            ],
        )
        sup.outage.succeeded()
        claimed, dead, lost = res[0], int(res[1]), int(res[2])
        if dead:
            self.stats.dead += dead
            log.error(
                "queue %s partition %d: dead-lettered %d jobs delivered more than "
                "max_deliveries=%d times",
                s.name,
                self.keys.partition,
                dead,
                s.max_deliveries,
            )
        if lost:
            self.stats.lost_by_trim += lost
            log.error(
                "queue %s partition %d: %d pending entries had been deleted from the stream "
                "by someone else (trimmed?); their jobs are lost",
                s.name,
                self.keys.partition,
                lost,
            )
        out: list[tuple[str, Mapping[Any, Any]]] = []
        for entry_id, flat, deliveries, _ in claimed:
            self._claimed[_text(entry_id)] = int(deliveries)
            out.append((_text(entry_id), dict(zip(flat[::2], flat[1::2], strict=True))))
        if out:
            self.stats.reclaimed += len(out)
            log.info(
                "queue %s partition %d: took over %d pending jobs",
                s.name,
                self.keys.partition,
                len(out),
            )
        return out

    async def _recover(self) -> None:
        # Nothing to do: only the lease owner reads the partition, and it took every
        # pending entry over when it began (see _take_over).
        return

    async def _burst_done(self) -> bool:
        if self._waiting or self._backlog:
            return False
        return await super()._burst_done()

    # ------------------------------------------------------------------ key order

    def _dispatch(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        deliveries = self._claimed.pop(entry_id, deliveries)
        try:
            key = Envelope.from_entry(entry_id, fields).key
        except EnvelopeError:
            key = ""
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
                super()._dispatch(next_id, fields, deliveries)

    def _signal(self) -> None:
        super()._signal()
        self._release.set()

    async def _flush(self) -> None:
        await super()._flush()
        self._release.set()

    # ------------------------------------------------------------------ retries

    async def _run_job(self, env: Envelope, scope: trio.CancelScope, deliveries: int) -> None:
        # A job dispatched just before the process stalled starts in the first round
        # after it, when Trio has just noticed a lease deadline that passed meanwhile:
        # no handler code may run then, not even up to its first await.
        await trio.lowlevel.checkpoint_if_cancelled()
        # Kept while the job runs, for its retries in place (see _failed).
        self._deliveries[env.entry_id] = deliveries
        try:
            await super()._run_job(env, scope, deliveries)
        finally:
            self._deliveries.pop(env.entry_id, None)

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
        # Totals of the partitions this worker owned and gave up (for burst summaries).
        self.finished = ConsumerStats()
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
        ids: Any = await sup.redis.zrange(
            members_key(sup.prefix), now_ms, "+inf", sortby=PureToken.BYSCORE
        )
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
            if self.assignment.get(p) != sup.member_id and not owned.consumer.stopping():
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
                    for field in attrs.fields(ConsumerStats):
                        total = getattr(self.finished, field.name)
                        setattr(
                            self.finished,
                            field.name,
                            total + getattr(done.consumer.stats, field.name),
                        )
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
            if self.owned.get(p) is not owned:
                continue  # released while we renewed the others
            sent = trio.current_time()
            ok: Any = await sup.scripts.lease_renew(
                keys=[self.keys(p).lease], args=[owned.token, int(ttl * 1000)]
            )
            if self.owned.get(p) is not owned:
                continue  # released meanwhile: not ours to renew, nor lost
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
