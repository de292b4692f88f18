"""The heartbeat loop: keeps this member alive and renews its partition leases.

Every ``heartbeat_interval`` it renews ``<prefix>:member:<id>`` (TTL
``heartbeat_ttl``) and this member's entry in the members set, then the leases of
the ordered partitions it owns. The heartbeat's value, read by ``status``, is a JSON
record: ``id``, ``app``, ``queues`` and, for a worker process of ``run --workers``,
``parent`` (``host:pid`` of the parent supervisor) and ``index`` (its slot).

It also notices trouble: a renewal that finds the heartbeat expired (peers may have
taken our jobs: every consumer checks its running jobs at once), and a gap longer
than half a TTL since the last success (we stalled: peers' heartbeats may look stale
to us for the same reason, so trust them later).

Cancellation: cancelled by the supervisor only after every consumer drained, so the
worker stays alive, and its jobs its own, for the whole drain.

Error handling: a lost connection or a transient refusal is reported to the outage
tracker and the beat is tried again within an interval. So is any other error reply
(a failover can produce replies no list foresees): a worker must not stop because
a beat failed once. Only a refusal of our credentials, and bugs, propagate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import orjson
import trio

from trioqueue import _scripts as scripts
from trioqueue._broker_errors import is_denied
from trioqueue._errors import BrokerError
from trioqueue._redis import RedisError
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._outage import repeat

__all__ = ["MEMBERS_FORGET_MS", "Heartbeat"]

log = logging.getLogger("trioqueue.worker.heartbeat")

# Members whose heartbeat expired this long ago are dropped from the members set.
MEMBERS_FORGET_MS = 3_600_000


class Heartbeat:
    """Renews this member's heartbeat and, through ``renewals``, its leases."""

    def __init__(
        self,
        ctx: WorkerContext,
        queues: Sequence[str],
        renewals: Callable[[], Sequence[Callable[[], Awaitable[None]]]],
        *,
        info: Mapping[str, object] | None = None,
    ) -> None:
        self._ctx = ctx
        self._info = dict(info or {})
        self._queues = list(queues)
        self._renewals = renewals

    async def beat(self) -> bool:
        """Renew our heartbeat; return False if it had expired (we were presumed dead)."""
        ctx = self._ctx
        ttl_ms = int(ctx.worker.heartbeat_ttl * 1000)
        info = orjson.dumps(
            {**self._info, "id": ctx.member_id, "app": ctx.app.name, "queues": self._queues}
        )
        alive = await scripts.run(
            ctx.redis,
            scripts.heartbeat(ctx.prefix, member_id=ctx.member_id, info=info, ttl_ms=ttl_ms),
        )
        touch = scripts.members_touch(
            ctx.prefix, member_id=ctx.member_id, ttl_ms=ttl_ms, forget_after_ms=MEMBERS_FORGET_MS
        )
        await scripts.run(ctx.redis, touch)
        ctx.liveness.beat_renewed()
        return alive

    async def run(self) -> None:
        """Beat every interval until cancelled."""
        ctx, liveness = self._ctx, self._ctx.liveness
        interval = ctx.worker.heartbeat_interval
        ttl = ctx.worker.heartbeat_ttl
        last_ok = trio.current_time()

        async def step() -> float:
            nonlocal last_ok
            liveness.beat_sent()
            try:
                alive = await self.beat()
                for renew in self._renewals():
                    await renew()
            finally:
                liveness.beat_done()
            # Ends an outage even when no consumer reads (all busy, or none): until
            # then peers_trusted() refuses every recovery.
            ctx.outage.succeeded()
            now = trio.current_time()
            gap = now - last_ok
            last_ok = now
            if gap > ttl / 2:
                # We stalled (paused, starved, cut off): peers' heartbeats may look
                # stale to us for the same reason, so trust them again only later.
                liveness.distrust()
            if not alive:
                log.warning(
                    "heartbeat lapsed (%.1fs without renewal, ttl %.1fs): peers may have "
                    "taken over our jobs; checking ownership of running jobs",
                    gap,
                    ttl,
                )
                liveness.lapsed()
            return interval

        async def failed(exc: Exception) -> float:
            if is_denied(exc) or not isinstance(exc, RedisError | BrokerError):
                raise exc
            ctx.outage.failed("heartbeat", exc)
            return interval

        await trio.sleep(interval)
        await repeat("heartbeat", step, ctx.outage, on_error=failed, max_wait=interval)
