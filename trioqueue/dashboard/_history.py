"""The per-minute history the throughput chart reads: the one place that knows its keys.

The history itself is written by the workers' acknowledgements (``trioqueue/_history.py``):
per partition and minute, a hash ``P:{Q:N}:history:<minute>`` (minute = epoch ms //
60,000) with the counts ``succeeded``, ``failed`` and ``dead`` among others. Until a
worker has settled a job there in the last hour, every key is absent and
``read_history`` says so with ``None`` ("no history yet").
"""

from __future__ import annotations

from typing import Any

from trioqueue._connection import Redis
from trioqueue._keys import PartitionKeys

__all__ = ["FIELDS", "MINUTES", "HistoryReader", "history_key", "read_history"]

FIELDS = ("succeeded", "failed", "dead")
MINUTES = 60


def history_key(keys: PartitionKeys, minute: int) -> str:
    """The history hash of one partition for one minute (epoch ms // 60,000)."""
    return keys.history(minute)


async def read_history(
    redis: Redis, prefix: str, queue: str, partitions: int, now_ms: int, minutes: int = MINUTES
) -> list[dict[str, Any]] | None:
    """The last ``minutes`` minutes of ``queue`` (oldest first, the current minute
    last), summed over its partitions: ``{"minute": epoch ms, "succeeded": n, ...}``.
    ``None`` when no partition has any history key in that hour. One pipelined round
    trip."""
    return await HistoryReader(minutes)(redis, prefix, queue, partitions, now_ms)


# One partition-minute as read: the counts of FIELDS, or None for an absent key.
Counts = tuple[int, ...] | None


class HistoryReader:
    """``read_history`` that remembers settled minutes: a minute more than one minute
    old no longer changes, so each snapshot reads only the last two minutes of each
    partition (and, on the first call, the whole hour)."""

    def __init__(self, minutes: int = MINUTES) -> None:
        self.minutes = minutes
        self._settled: dict[tuple[str, str, int, int], Counts] = {}

    async def __call__(
        self, redis: Redis, prefix: str, queue: str, partitions: int, now_ms: int
    ) -> list[dict[str, Any]] | None:
        """The history of ``queue`` now (see ``read_history``)."""
        current = now_ms // 60_000
        span = range(current - self.minutes + 1, current + 1)
        wanted = [(prefix, queue, p, m) for p in range(partitions) for m in span]
        missing = [w for w in wanted if w not in self._settled]
        read: dict[tuple[str, str, int, int], Counts] = {}
        if missing:
            replies = await redis.pipeline(
                [
                    ("HMGET", history_key(PartitionKeys(pfx, q, p), m), *FIELDS)
                    for pfx, q, p, m in missing
                ]
            )
            for key, reply in zip(missing, replies, strict=True):
                counts: Counts = None
                if isinstance(reply, list) and any(v is not None for v in reply):
                    counts = tuple(int(v or 0) for v in reply)
                read[key] = counts
                if key[3] < current - 1:
                    self._settled[key] = counts
        for key in [k for k in self._settled if k[1] == queue and k[3] < span.start]:
            del self._settled[key]
        points = [{"minute": m * 60_000, **dict.fromkeys(FIELDS, 0)} for m in span]
        seen = False
        for key in wanted:
            counts = read[key] if key in read else self._settled[key]
            if counts is None:
                continue
            seen = True
            point = points[key[3] - span.start]
            for field, value in zip(FIELDS, counts, strict=True):
                point[field] += value
        return points if seen else None
