"""Reading a queue's job events (see ``trioqueue/_events.py`` for the format and the
cursor): where to start, then one blocking read of every partition's stream at a time."""

from __future__ import annotations

from typing import Any

from trioqueue._core._base import Core
from trioqueue._core._commands import Op, XRange, XRead
from trioqueue._events import START, JobEvent, cursor, event_from_entry, positions
from trioqueue._keys import check_queue_name


def start(core: Core, queue: str, since: str | None) -> Op[list[str]]:
    """The position in each partition's stream to read after: ``since``'s, or (None)
    each stream's newest event, so that only events from now on are read."""
    check_queue_name(queue)
    n: int = yield from core.partitions(queue)
    pos = positions(since, n)
    if pos is not None:
        return pos
    out = []
    for p in range(n):
        last: list[Any] = yield XRange(core.keys(queue, p).events, count=1, reverse=True)
        out.append(_text(last[0][0]) if last else START)
    return out


def read(
    core: Core, queue: str, pos: list[str], *, count: int, block_ms: int
) -> Op[tuple[list[JobEvent], list[str]]]:
    """The events after ``pos`` (waiting up to ``block_ms`` for one), oldest first
    across partitions, and the position after them."""
    n: int = yield from core.partitions(queue)
    pos = pos + [START] * (n - len(pos))  # partitions added meanwhile: from the start
    keys = [core.keys(queue, p).events for p in range(len(pos))]
    reply: list[Any] = yield XRead(tuple(zip(keys, pos, strict=True)), count, block_ms)
    index = {k: i for i, k in enumerate(keys)}
    items = []
    for stream, entries in reply:
        p = index[_text(stream)]
        for entry_id, fields in entries:
            eid = _text(entry_id)
            ms, _, seq = eid.partition("-")
            items.append((int(ms), int(seq or 0), p, eid, fields or {}))
    items.sort(key=lambda item: item[:3])
    pos = list(pos)
    events = []
    for _, _, p, eid, fields in items:
        pos[p] = eid
        event = event_from_entry(queue, p, eid, fields, eid if len(pos) == 1 else cursor(pos))
        if event is not None:
            events.append(event)
    return events, pos


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
