"""Start-up: what a worker does once connected, before any loop or consumer runs.

It settles each queue's partition count (the broker's stored count wins), writes the
queue bounds into every partition's meta hash (skipped, with a warning, on a broker
out of memory: a full broker must still be drainable), distrusts peers' heartbeats
for a while if the server has just (re)started, and writes the first heartbeat.

Error handling: a broker that refuses for a moment (``READONLY`` from a replica that
has not been promoted yet, ``MASTERDOWN``, ``LOADING``, a lost connection) is waited
for with backoff, logged once, as the loops do: every step here is idempotent. Any
other refusal (credentials, a bug) ends the worker's start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from trioqueue._config import QueueSettings
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._heartbeat import Heartbeat
from trioqueue._worker._partitions import resolve_partitions, store_queue_bounds

__all__ = ["only", "start_up"]

log = logging.getLogger("trioqueue.worker")


async def start_up(
    ctx: WorkerContext, settings: dict[str, QueueSettings], heartbeat: Heartbeat
) -> None:
    """Partition counts (``settings`` is updated in place), bounds, uptime, first beat."""
    await ctx.outage.call("start-up", lambda: _start_up(ctx, settings, heartbeat))


async def _start_up(
    ctx: WorkerContext, settings: dict[str, QueueSettings], heartbeat: Heartbeat
) -> None:
    try:
        await resolve_partitions(ctx.redis, ctx.prefix, settings)
        await store_queue_bounds(ctx.redis, ctx.prefix, settings.values())
    except Exception as exc:
        if "OOM" not in str(exc):
            raise
        log.warning("broker is out of memory: queue settings not stored; draining anyway (%s)", exc)
    info: Any = await ctx.redis.info("server")
    uptime = float(info.get("uptime_in_seconds", 1e9))
    ttl = ctx.worker.heartbeat_ttl
    if uptime < ttl:
        # The server just (re)started: heartbeats of live peers may not have been
        # renewed yet, so do not take their jobs until a full TTL has passed.
        ctx.liveness.distrust(ttl - uptime)
    await heartbeat.beat()


def only(
    settings: dict[str, QueueSettings], queues: Iterable[str] | None
) -> dict[str, QueueSettings]:
    """The settings of ``queues`` (all with None); ``ValueError`` naming unknown ones."""
    if queues is None:
        return settings
    unknown = sorted(set(queues) - set(settings))
    if unknown:
        raise ValueError(f"no handler registered for queue(s) {', '.join(unknown)}")
    return {q: settings[q] for q in queues}
