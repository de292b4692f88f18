"""Dead letters of a queue: listing, re-sending and purging them in every partition."""

from __future__ import annotations

from collections.abc import Sequence

from trioqueue import _scripts as scripts
from trioqueue._connection import as_text
from trioqueue._core._base import Core
from trioqueue._core._commands import Delete, Op, XDel, XLen, XRange
from trioqueue._deadletters import DeadLetter

# Dead letters re-sent per script call when re-sending all of them.
PAGE = 500


def dead_letters(core: Core, queue: str, count: int) -> Op[list[DeadLetter]]:
    """The oldest ``count`` dead letters of each partition of ``queue``."""
    out: list[DeadLetter] = []
    n = yield from core.partitions(queue)
    for p in range(n):
        entries = yield XRange(core.keys(queue, p).dead, count=count)
        out += [DeadLetter.from_entry(as_text(i), fields, p) for i, fields in entries]
    return out


def retry_dead_letters(core: Core, queue: str, ids: Sequence[str] | None) -> Op[tuple[int, int]]:
    """Re-send dead letters (``ids``, or all) of every partition; (re-sent, skipped)."""
    resent = skipped = 0
    n = yield from core.partitions(queue)
    for p in range(n):
        r, s = yield from _retry_partition(core, queue, p, ids)
        resent, skipped = resent + r, skipped + s
    return resent, skipped


def _retry_partition(
    core: Core, queue: str, partition: int, ids: Sequence[str] | None
) -> Op[tuple[int, int]]:
    """Re-send dead letters of one partition. With ``ids`` None, all those there when it
    starts: a re-sent job that fails again and comes back is not re-sent in this call."""
    keys = core.keys(queue, partition)
    if ids is not None:
        if not ids:
            return 0, 0
        done: scripts.Resent = yield scripts.dlq_retry_ids(keys, ids)
        return done.resent, done.skipped
    newest = yield XRange(keys.dead, count=1, reverse=True)
    if not newest:
        return 0, 0
    end = as_text(newest[0][0])
    total_resent = total_skipped = 0
    start = "-"
    while True:
        page: scripts.Resent = yield scripts.dlq_retry_range(keys, start=start, end=end, count=PAGE)
        total_resent += page.resent
        total_skipped += page.skipped
        if not page.last or page.last == end:
            return total_resent, total_skipped
        start = f"({page.last}"


def purge_dead_letters(core: Core, queue: str, ids: Sequence[str] | None) -> Op[int]:
    """Delete dead letters (``ids``, or all) of every partition; how many were deleted."""
    deleted = 0
    n = yield from core.partitions(queue)
    for p in range(n):
        dead = core.keys(queue, p).dead
        if ids is None:
            count: int = yield XLen(dead)
            yield Delete((dead,))
            deleted += int(count)
        elif ids:
            deleted += int((yield XDel(dead, tuple(ids))))
    return deleted
