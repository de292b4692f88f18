"""Recovery: takes over the jobs of dead members and of entries idle too long.

It runs inside the fetch loop, before a read, at most once per heartbeat interval,
and claims at most as many entries as the consumer has free slots, so reclaimed jobs
respect ``concurrency`` like fetched ones. A job taken over from vanished members
``SUSPECT_AT`` deliveries in a row runs alone (the consumer takes nothing else until
it is done), so that a job killing its workers charges no innocent job beside it.

Taking over is two scripts: ``reclaim.lua`` claims what it may and lists entries past
``max_deliveries``, and ``reclaim_dead.lua`` dead-letters those at once with their
jobs' keys (``take_over``; the ordered queue's new owner uses it too).

Error handling: errors propagate to the fetch loop, which classifies them.
"""

from __future__ import annotations

import logging

import attrs
import trio

from trioqueue import _scripts as scripts
from trioqueue._config import QueueSettings
from trioqueue._connection import as_text
from trioqueue._keys import GROUP, PartitionKeys, member_key
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._inflight import Dispatch, InFlight
from trioqueue._worker._stats import ConsumerStats

__all__ = ["SUSPECT_AT", "Recovery", "TakenOver", "take_over"]

log = logging.getLogger("trioqueue.worker.recovery")

# A job taken over from vanished members this many deliveries in a row runs alone. The
# first takeover is usually an ordinary crash or restart: all the jobs it held come
# back, and running those one by one would only slow recovery. A job present at the
# next death too may be the one killing its workers; alone, only it is charged.
SUSPECT_AT = 3


class Recovery:
    """Reclaims stranded entries of one shared-queue partition."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: QueueSettings,
        keys: PartitionKeys,
        inflight: InFlight,
        stats: ConsumerStats,
        dispatch: Dispatch,
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._keys = keys
        self._inflight = inflight
        self._stats = stats
        self._dispatch = dispatch
        self._next = 0.0
        # Suspects wait for this consumer to become idle (see SUSPECT_AT).
        self.suspects_left = False

    def due(self) -> bool:
        """Whether a recovery should run before the next read."""
        return self._inflight.recover_now or trio.current_time() >= self._next

    @property
    def next_due(self) -> float:
        """When the next regular recovery runs (trio clock)."""
        return self._next

    def soon(self) -> None:
        """Run a recovery before the next read (the consumer became idle)."""
        self._next = 0.0

    async def recover(self) -> None:
        """Claim entries of dead members, then entries idle past the visibility timeout."""
        ctx, inflight = self._ctx, self._inflight
        inflight.recover_now = False
        self._next = trio.current_time() + ctx.worker.heartbeat_interval
        self.suspects_left = False
        trusted = ctx.liveness.peers_trusted
        if trusted():
            for info in await ctx.redis.xinfo_consumers(self._keys.stream, GROUP):
                name = as_text(info["name"])
                pending = int(info.get("pending", 0))
                if name == ctx.member_id:
                    continue
                alive = await ctx.redis.exists([member_key(ctx.prefix, name)])
                # A missing heartbeat means death only while our own writes flow; ask
                # again after every await, as a stall can begin at any time.
                if alive or not trusted():
                    continue
                if pending > 0 and inflight.free > 0:
                    # Its heartbeat expired, yet it may have just woken from a stall
                    # and read new entries before renewing it. A dead member touched
                    # its entries last within one interval after its last beat, so
                    # by now they have been idle at least TTL - interval: take those.
                    w = ctx.worker
                    idle_ms = int(max(0.0, w.heartbeat_ttl - w.heartbeat_interval) * 1000)
                    n = await self._reclaim(owner=name, min_idle_ms=idle_ms)
                    if n:
                        log.warning(
                            "queue %s: reclaimed %d jobs of dead member %s",
                            self._settings.name,
                            n,
                            name,
                        )
                elif pending == 0:
                    await scripts.run(ctx.redis, scripts.forget_consumer(self._keys, consumer=name))
        if inflight.free > 0 and trusted():
            # After an outage, live peers' entries look idle until they renew them.
            vt = self._settings.visibility_timeout
            n = await self._reclaim(owner="", min_idle_ms=int(vt * 1000))
            if n:
                log.warning(
                    "queue %s: reclaimed %d jobs idle past visibility_timeout (%ss)",
                    self._settings.name,
                    n,
                    vt,
                )

    async def _reclaim(self, *, owner: str, min_idle_ms: int) -> int:
        inflight = self._inflight
        if inflight.isolated is not None:
            return 0  # a suspect runs alone: take nothing else until it is done
        s = self._settings
        got = await take_over(
            self._ctx,
            self._keys,
            s,
            owner=owner,
            min_idle_ms=min_idle_ms,
            count=inflight.free,
            suspect_at=min(SUSPECT_AT, s.max_deliveries),
            idle=inflight.idle(),
            own=False,
        )
        claimed, dead, lost = got.claimed, got.dead, got.lost
        if got.suspects_left:
            self.suspects_left = True
        if dead:
            self._stats.dead += dead
            log.error(
                "queue %s: dead-lettered %d jobs delivered more than max_deliveries=%d times",
                s.name,
                dead,
                s.max_deliveries,
            )
        if lost:
            self._stats.lost_by_trim += lost
            log.error(
                "queue %s: %d pending entries had been deleted from the stream by someone "
                "else (trimmed?); their jobs are lost",
                s.name,
                lost,
            )
        for c in claimed:
            if c.suspect:
                inflight.isolated = c.entry_id
                log.warning(
                    "queue %s: entry %s was held by members that vanished, %d deliveries "
                    "in a row (max_deliveries=%d); running it alone",
                    s.name,
                    c.entry_id,
                    c.deliveries,
                    s.max_deliveries,
                )
            self._dispatch(c.entry_id, c.fields, c.deliveries)
        self._stats.reclaimed += len(claimed)
        return len(claimed)


@attrs.frozen
class TakenOver:
    """What a takeover claimed, dead-lettered (past ``max_deliveries``), found deleted
    from the stream (``lost``), and whether suspects were left for an idle consumer."""

    claimed: list[scripts.Claimed]
    dead: int
    lost: int
    suspects_left: bool


async def take_over(
    ctx: WorkerContext,
    keys: PartitionKeys,
    settings: QueueSettings,
    *,
    owner: str,
    min_idle_ms: int,
    count: int,
    suspect_at: int,
    idle: bool,
    own: bool,
) -> TakenOver:
    """Claim stranded entries (see ``reclaim.lua``), then dead-letter those past
    ``max_deliveries``: that needs their jobs' keys, known only once the first script
    has read their entries, so it is a second script, run only when there are any."""
    me, limit = ctx.member_id, settings.max_deliveries
    claim = scripts.reclaim(
        keys, consumer=me, min_idle_ms=min_idle_ms, count=count, owner=owner, max_deliveries=limit,
        suspect_at=suspect_at, idle=idle, own=own,
    )  # fmt: skip
    got = await scripts.run(ctx.redis, claim)
    dead = lost = 0
    if got.over:
        ttl_ms = int(settings.result_ttl * 1000)
        bury = scripts.reclaim_dead(
            keys, consumer=me, min_idle_ms=min_idle_ms, max_deliveries=limit, worker=me,
            result_ttl_ms=ttl_ms, own=own, entries=got.over,
            events_max=settings.events_max_length if settings.events else 0,
        )  # fmt: skip
        buried = await scripts.run(ctx.redis, bury)
        dead, lost = buried.dead, buried.lost
    return TakenOver(got.claimed, dead, got.lost + lost, got.suspects_left > 0)
