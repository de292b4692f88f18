"""The per-minute job history: the wire format of its hashes, read and summed.

Each partition keeps one hash per minute, ``P:{Q:N}:history:<epoch minute>``, with
the counts of jobs ``succeeded``, ``failed`` (attempts that failed), ``retried``,
``dead`` and ``cancelled`` settled in that minute and the total handler time in
milliseconds (``handler_ms``), written by the acknowledgement script a few
``HINCRBY`` per batch (see ``ack.lua``) and kept ``[metrics] history_hours``. A queue's
minute is the sum over its partitions. Minutes are the worker's clock (epoch seconds
// 60) when written; the current minute when read is the server's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FIELDS", "RATE_MINUTES", "minutes_before", "rates", "summed"]

FIELDS = ("succeeded", "failed", "retried", "dead", "cancelled", "handler_ms")
# How many minutes (the current one included) ``status`` shows rates over.
RATE_MINUTES = 5


def minutes_before(now_ms: int, count: int = RATE_MINUTES) -> list[int]:
    """The epoch minutes of the last ``count`` minutes, oldest first, ending with the
    one ``now_ms`` is in."""
    current = now_ms // 60_000
    return list(range(current - count + 1, current + 1))


def summed(minute: int, hashes: Iterable[Mapping[Any, Any]]) -> dict[str, Any]:
    """One minute of a queue: its partitions' hashes (as read, bytes or text) added up."""
    out: dict[str, Any] = {"minute": _iso(minute)}
    out.update(dict.fromkeys(FIELDS, 0))
    for raw in hashes:
        for name, value in raw.items():
            key = name.decode() if isinstance(name, bytes) else str(name)
            if key in out and key != "minute":
                out[key] += int(value)
    return out


def rates(minutes: list[dict[str, Any]], now_ms: int) -> dict[str, float]:
    """Per-second rates over ``minutes`` (as ``summed`` gives them, the last one the
    current, partial minute: the window ends now), and the mean handler time."""
    window = (len(minutes) - 1) * 60.0 + (now_ms % 60_000) / 1000.0
    window = max(window, 1.0)
    totals = {name: sum(m[name] for m in minutes) for name in FIELDS}
    out: dict[str, float] = {"window_seconds": round(window, 1)}
    for name in FIELDS[:-1]:
        out[f"{name}_per_second"] = round(totals[name] / window, 3)
    runs = totals["succeeded"] + totals["failed"] + totals["cancelled"]
    out["handler_ms_mean"] = round(totals["handler_ms"] / runs, 3) if runs else 0.0
    return out


def _iso(minute: int) -> str:
    return dt.datetime.fromtimestamp(minute * 60, tz=dt.UTC).isoformat()
