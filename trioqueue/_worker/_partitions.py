"""Partition counts: the broker's stored count wins; increases are picked up live.

At start-up each queue's partition count is read from its meta hash (ours is stored
if none is), and the queue bounds are written to every partition's meta hash so that
every producer enforces them. While running, the partition watch looks for counts
raised by ``trioqueue partitions --increase-to`` and hands each increase on.

Cancellation: the watch is cancelled with the other loops.

Error handling: the watch retries silently after a lost connection (the other loops
report outages); other errors propagate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
import trio

from trioqueue._config import QueueSettings
from trioqueue._connection import Redis
from trioqueue._keys import PartitionKeys
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._outage import repeat

__all__ = ["PartitionWatch", "resolve_partitions", "store_queue_bounds"]

log = logging.getLogger("trioqueue.worker.partitions")


async def store_queue_bounds(redis: Redis, prefix: str, settings: Iterable[Any]) -> None:
    """Write each queue's bounds (and its event stream length, 0 = events off) to its
    meta hash so every producer enforces them."""
    for s in settings:
        # Every partition's meta hash: the send script reads the one of its hash tag.
        for partition in range(s.partitions):
            meta = PartitionKeys(prefix, s.name, partition).meta
            await redis.hset(
                meta,
                {
                    "max_length": s.max_length or 0,
                    "max_message_bytes": s.max_message_bytes,
                    "events": s.events_max_length if s.events else 0,
                },
            )


async def stored_partitions(redis: Redis, prefix: str, queues: Iterable[str]) -> dict[str, int]:
    """The partition count stored for each of ``queues`` that has one."""
    out = {}
    for name in queues:
        raw = await redis.hget(PartitionKeys(prefix, name).meta, "partitions")
        if raw is not None:
            out[name] = int(raw)
    return out


async def resolve_partitions(redis: Redis, prefix: str, settings: dict[str, QueueSettings]) -> None:
    """The partition count stored in Redis is the truth; store ours if none is."""
    stored = await stored_partitions(redis, prefix, settings)
    for name, s in list(settings.items()):
        count = stored.get(name)
        if count is None:
            await redis.hsetnx(PartitionKeys(prefix, name).meta, "partitions", s.partitions)
            continue
        if count != s.partitions:
            log.warning(
                "queue %s: the config says %d partitions but the broker has %d; using %d "
                "(change it with `trioqueue partitions CONFIG %s --increase-to N`)",
                name,
                s.partitions,
                count,
                count,
                name,
            )
            settings[name] = attrs.evolve(s, partitions=count)


class PartitionWatch:
    """Picks up partition increases made while running (``trioqueue partitions``)."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: dict[str, QueueSettings],
        on_increase: Callable[[QueueSettings, int], Awaitable[None]],
    ) -> None:
        self._ctx = ctx
        self._settings = settings  # updated in place: every loop reads the new counts
        self._on_increase = on_increase

    async def run(self) -> None:
        """Look every two heartbeat intervals (at least every second) until cancelled."""
        ctx = self._ctx
        period = max(1.0, ctx.worker.heartbeat_interval * 2)

        async def step() -> float:
            stored = await stored_partitions(ctx.redis, ctx.prefix, self._settings)
            for name, count in stored.items():
                s = self._settings[name]
                if count <= s.partitions:
                    continue
                log.warning(
                    "queue %s: partitions increased from %d to %d; consuming the new ones",
                    name,
                    s.partitions,
                    count,
                )
                old = s.partitions
                self._settings[name] = s = attrs.evolve(s, partitions=count)
                await store_queue_bounds(ctx.redis, ctx.prefix, [s])
                await self._on_increase(s, old)
            return period

        await trio.sleep(period)
        await repeat("partition watch", step, None, max_wait=period)
