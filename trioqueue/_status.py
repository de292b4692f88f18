"""A snapshot of the broker's view of an app: queues, backlogs, members."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import coredis.exceptions as cx
import orjson

from trioqueue._connection import Redis
from trioqueue._keys import GROUP, PartitionKeys, member_key, members_key


async def collect_status(redis: Redis, prefix: str, queues: Iterable[str]) -> dict[str, Any]:
    """One JSON-ready document: live ``members`` and per-queue partition figures."""
    now: Any = await redis.time()
    now_ms = int(now.timestamp() * 1000)
    member_ids: Any = await redis.zrangebyscore(members_key(prefix), now_ms, float("inf"))
    members = []
    for raw_id in member_ids or ():
        member = _text(raw_id)
        info = await redis.get(member_key(prefix, member))
        if info is None:
            continue  # expired between the two reads: not live
        doc = orjson.loads(info)
        members.append({"id": member, "queues": doc.get("queues", []), "partitions": {}})
    out: dict[str, Any] = {"members": members, "queues": {}}
    for queue in queues:
        keys = PartitionKeys(prefix, queue)
        pending = 0
        consumers: list[dict[str, Any]] = []
        try:
            summary: Any = await redis.xpending(keys.stream, GROUP)
            pending = int(summary.pending if hasattr(summary, "pending") else summary[0])
            infos: Any = await redis.xinfo_consumers(keys.stream, GROUP)
            for c in infos or ():
                d = {_text(k): v for k, v in c.items()}
                consumers.append({"name": _text(d["name"]), "pending": int(d.get("pending", 0))})
        except Exception as exc:  # no group yet: nothing consumed so far
            # coredis raises NOGROUP as StreamConsumerGroupError, without the code.
            if "NOGROUP" not in str(exc) and not isinstance(exc, cx.StreamConsumerGroupError):
                raise
        backlog = int(await redis.xlen(keys.stream))
        partition = {
            "index": 0,
            "backlog": backlog,
            "pending": pending,
            "queued": backlog - pending,
            "delayed": int(await redis.zcard(keys.delayed)),
            "dead": int(await redis.xlen(keys.dead)),
            "owner": None,
            "consumers": consumers,
        }
        out["queues"][queue] = {"partitions": [partition], "mode": "shared"}
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
