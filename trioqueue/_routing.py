"""Where and when a sent job goes: its partition (``partition_for``) and its due time
(``due_ms``). Both are part of the wire contract: a sender in another language must
compute the same partition (see docs/reference/wire-format.md)."""

from __future__ import annotations

import datetime as dt
import random
import zlib


def partition_for(key: str | None, partitions: int) -> int:
    """The partition of ``key``: CRC-32 (zlib, unsigned) of its UTF-8 bytes, modulo the
    partition count; without a key, a random partition (spreads the load)."""
    if partitions <= 1:
        return 0
    if key is None:
        return random.randrange(partitions)
    return zlib.crc32(key.encode("utf-8")) % partitions


def home_first(key: str, partitions: int) -> list[int]:
    """Every partition, the one ``key`` hashes to first: the order in which a job known
    only by its id is looked for (sent with ``job_id=`` and no key, it is there)."""
    home = partition_for(key, partitions)
    return [home, *(p for p in range(partitions) if p != home)]


def due_ms(delay: float | dt.timedelta | None, at: dt.datetime | None) -> int:
    """The send script's ``due`` argument: 0 now, > 0 epoch ms, < 0 minus a delay in ms."""
    if delay is not None and at is not None:
        raise ValueError("give delay or at, not both")
    if at is not None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at must be an aware datetime (e.g. datetime.now(UTC) + ...)")
        return max(1, int(at.timestamp() * 1000))
    if delay is None:
        return 0
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else float(delay)
    if seconds < 0:
        raise ValueError("delay must be >= 0")
    return -int(seconds * 1000) if seconds > 0 else 0
