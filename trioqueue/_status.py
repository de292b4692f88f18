"""A snapshot of the broker's view of an app: queues, partitions, backlogs, members."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import trio

from trioqueue import _history
from trioqueue import _scripts as scripts
from trioqueue._connection import Redis, as_text
from trioqueue._keys import GROUP, PartitionKeys, member_key, members_key
from trioqueue._redis import ClusterRedis, field_map


async def partition_count(redis: Redis, prefix: str, queue: str, default: int = 1) -> int:
    """The partition count stored in Redis (the truth), else ``default``."""
    raw = await redis.hget(PartitionKeys(prefix, queue).meta, "partitions")
    return int(raw) if raw is not None else default


async def collect_status(
    redis: Redis, prefix: str, queues: Iterable[str], ordered: Iterable[str] = ()
) -> dict[str, Any]:
    """One JSON-ready document: the live ``members`` (each with the partitions it owns
    per ordered queue, and its parent supervisor if it has one), the ``supervisors``
    (each parent with its members' ids, by index) and per-queue ``partitions`` figures,
    with the queue's last minutes of ``history`` and the ``rates`` over them."""
    # TIME through a script: the client's TIME reply loses the milliseconds, and a
    # member whose heartbeat expired within the last second would still look live.
    now_ms = await scripts.run(redis, scripts.server_time()) // 1000
    member_ids = await redis.zrangebyscore(members_key(prefix), now_ms, "+inf")
    members: dict[str, dict[str, Any]] = {}
    for raw_id in member_ids or ():
        member = as_text(raw_id)
        info = await redis.get(member_key(prefix, member))
        if info is None:
            continue  # expired between the two reads: not live
        doc = orjson.loads(info)
        members[member] = {
            "id": member,
            "queues": doc.get("queues", []),
            "partitions": {},
            # Set for the worker processes of a `run --workers N` parent (host:pid).
            "parent": doc.get("parent"),
            "index": doc.get("index"),
        }
    ordered = set(ordered)
    out: dict[str, Any] = {"members": [], "queues": {}}
    for queue in queues:
        partitions = await _partitions(redis, prefix, queue)
        for p in partitions:
            owner = p["owner"]
            if owner in members:
                members[owner]["partitions"].setdefault(queue, []).append(p["index"])
        out["queues"][queue] = {
            "mode": "ordered" if queue in ordered else "shared",
            "paused": bool(await redis.exists([PartitionKeys(prefix, queue).paused])),
            "partitions": partitions,
        }
        history = await queue_history(redis, prefix, queue, len(partitions), now_ms)
        out["queues"][queue]["history"] = history
        out["queues"][queue]["rates"] = _history.rates(history, now_ms)
    out["members"] = sorted(
        members.values(), key=lambda m: (m["parent"] or m["id"], m["parent"] is not None, _index(m))
    )
    parents: dict[str, list[str]] = {}
    for m in out["members"]:
        if m["parent"] is not None:
            parents.setdefault(m["parent"], []).append(m["id"])
    out["supervisors"] = [{"id": p, "members": ids} for p, ids in parents.items()]
    return out


def _index(member: dict[str, Any]) -> int:
    index = member["index"]
    return index if isinstance(index, int) else -1


async def queue_history(
    redis: Redis, prefix: str, queue: str, partitions: int, now_ms: int
) -> list[dict[str, Any]]:
    """The queue's last ``RATE_MINUTES`` minutes of history (the current one last),
    each summed over its partitions: one pipelined round trip."""
    minutes = _history.minutes_before(now_ms)
    keys = [PartitionKeys(prefix, queue, p) for p in range(max(partitions, 1))]
    replies = await redis.pipeline([("HGETALL", k.history(m)) for m in minutes for k in keys])
    n = len(keys)
    return [
        _history.summed(m, (_hash(r) for r in replies[i * n : (i + 1) * n]))
        for i, m in enumerate(minutes)
    ]


async def _partitions(redis: Redis, prefix: str, queue: str) -> list[dict[str, Any]]:
    """Every partition's figures, read concurrently: the client pipelines their
    commands on one connection, so N partitions cost about one's round trips, not N."""
    count = await partition_count(redis, prefix, queue)
    out: list[dict[str, Any]] = [{}] * count

    async def read(index: int) -> None:
        out[index] = await _partition(redis, PartitionKeys(prefix, queue, index))

    async with trio.open_nursery() as nursery:
        for index in range(count):
            nursery.start_soon(read, index)
    return out


async def _partition(redis: Redis, keys: PartitionKeys) -> dict[str, Any]:
    pending = 0
    consumers: list[dict[str, Any]] = []
    try:
        pending = await redis.xpending_count(keys.stream, GROUP)
        for c in await redis.xinfo_consumers(keys.stream, GROUP):
            consumers.append({"name": as_text(c["name"]), "pending": int(c.get("pending", 0))})
    except Exception as exc:  # no group yet: nothing consumed so far
        if "NOGROUP" not in str(exc) and "no such key" not in str(exc).lower():
            raise
    backlog = int(await redis.xlen(keys.stream))
    lease = await redis.get(keys.lease)
    lost = await redis.execute("HMGET", keys.meta, "rollbacks", "lost")
    return {
        "index": keys.partition,
        "backlog": backlog,
        "pending": pending,
        "queued": backlog - pending,
        "delayed": int(await redis.zcard(keys.delayed)),
        "dead": int(await redis.xlen(keys.dead)),
        "owner": as_text(lease).rsplit(":", 1)[0] if lease is not None else None,
        "consumers": consumers,
        # Writes the broker lost after acknowledging them, as workers noticed them.
        "rollbacks": int(lost[0] or 0),
        "lost": int(lost[1] or 0),
        # On a cluster, the primary that holds the partition's keys (one hash slot).
        "node": redis.node_of(keys.stream) if isinstance(redis, ClusterRedis) else None,
    }


def _hash(reply: Any) -> dict[Any, Any]:
    """An ``HGETALL`` reply (a flat list, or a map) as a dict; an error reply (a
    missing ACL permission, say) is raised."""
    if isinstance(reply, Exception):
        raise reply
    if isinstance(reply, dict):
        return reply
    return field_map(reply) or {}
