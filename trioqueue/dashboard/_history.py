"""The per-minute history the throughput chart reads: the one place that knows its keys.

The history itself is written by the workers (the operational-signals work): per
partition and minute, a hash ``P:{Q:N}:history:<minute>`` (minute = epoch ms // 60,000)
with the counts ``succeeded``, ``failed`` and ``dead``. Until workers write it, every
key is absent and ``read_history`` says so with ``None`` ("no history yet"). Adapt
this module, and only it, if the layout changes.
"""

from __future__ import annotations

from typing import Any

from trioqueue._connection import Redis
from trioqueue._keys import PartitionKeys

__all__ = ["FIELDS", "MINUTES", "history_key", "read_history"]

FIELDS = ("succeeded", "failed", "dead")
MINUTES = 60


def history_key(keys: PartitionKeys, minute: int) -> str:
    """The history hash of one partition for one minute (epoch ms // 60,000)."""
    return f"{keys.tag}:history:{minute}"


async def read_history(
    redis: Redis, prefix: str, queue: str, partitions: int, now_ms: int, minutes: int = MINUTES
) -> list[dict[str, Any]] | None:
    """The last ``minutes`` minutes of ``queue`` (oldest first, the current minute
    last), summed over its partitions: ``{"minute": epoch ms, "succeeded": n, ...}``.
    ``None`` when no partition has any history key in that hour. One pipelined round
    trip."""
    first = now_ms // 60_000 - minutes + 1
    span = range(first, first + minutes)
    commands = [
        ("HMGET", history_key(PartitionKeys(prefix, queue, p), m), *FIELDS)
        for p in range(partitions)
        for m in span
    ]
    if not commands:
        return None
    replies = await redis.pipeline(commands)
    seen = False
    points = [{"minute": m * 60_000, **dict.fromkeys(FIELDS, 0)} for m in span]
    for i, reply in enumerate(replies):
        if not isinstance(reply, list):
            continue  # an error reply (a key of another type): not history
        point = points[i % minutes]
        for field, value in zip(FIELDS, reply, strict=True):
            if value is not None:
                seen = True
                point[field] += int(value)
    return points if seen else None
