"""Reading and handling a queue's dead-letter stream."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from trioqueue import _scripts as scripts
from trioqueue._connection import Redis
from trioqueue._envelope import entry_fields_text
from trioqueue._keys import PartitionKeys

__all__ = ["DeadLetter"]

PAGE = 500


@attrs.frozen
class DeadLetter:
    """One entry of a dead-letter stream: the job and why it ended there."""

    id: str
    job_id: str
    type_name: str
    body: str
    error_type: str
    error: str
    attempts: int
    worker: str
    failed_at: dt.datetime | None
    traceback: str = ""
    fields: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    partition: int = 0

    @classmethod
    def from_entry(cls, entry_id: str, raw: Mapping[Any, Any]) -> DeadLetter:
        f = entry_fields_text(raw)
        failed = f.get("failed_at")
        try:
            attempts = int(f.get("attempts", f.get("attempt", "1")))
        except ValueError:
            attempts = 0
        return cls(
            id=entry_id,
            job_id=f.get("id", ""),
            type_name=f.get("type", ""),
            body=f.get("body", ""),
            error_type=f.get("error_type", ""),
            error=f.get("error", ""),
            attempts=attempts,
            worker=f.get("worker", ""),
            failed_at=(
                dt.datetime.fromtimestamp(int(failed) / 1000, tz=dt.UTC)
                if failed and failed.isdigit()
                else None
            ),
            traceback=f.get("traceback", ""),
            fields=f,
        )


async def list_dead(redis: Redis, keys: PartitionKeys, count: int) -> list[DeadLetter]:
    entries: Any = await redis.xrange(keys.dead, count=count)
    return [
        attrs.evolve(
            DeadLetter.from_entry(_text(e.identifier), e.field_values), partition=keys.partition
        )
        for e in entries or ()
    ]


async def retry_dead(
    redis: Redis, keys: PartitionKeys, ids: Sequence[str] | None
) -> tuple[int, int]:
    """Re-send dead letters (all when ``ids`` is None); return (re-sent, skipped).

    "All" means the ones there when it starts: a re-sent job that fails again and
    comes back is not re-sent a second time in the same call.
    """
    if ids is not None:
        if not ids:
            return 0, 0
        done = await scripts.run(redis, scripts.dlq_retry_ids(keys, ids))
        return done.resent, done.skipped
    newest: Any = await redis.xrevrange(keys.dead, count=1)
    if not newest:
        return 0, 0
    end = _text(newest[0].identifier)
    total_resent = total_skipped = 0
    start = "-"
    while True:
        page = await scripts.run(
            redis, scripts.dlq_retry_range(keys, start=start, end=end, count=PAGE)
        )
        total_resent += page.resent
        total_skipped += page.skipped
        if not page.last or page.last == end:
            return total_resent, total_skipped
        start = f"({page.last}"


async def purge_dead(redis: Redis, keys: PartitionKeys, ids: Sequence[str] | None) -> int:
    """Delete dead letters (all when ``ids`` is None); return how many were deleted."""
    if ids is None:
        count = int(await redis.xlen(keys.dead))
        await redis.delete([keys.dead])
        return count
    return int(await redis.xdel(keys.dead, list(ids))) if ids else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
