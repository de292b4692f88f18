"""Typed calls of the scripts a worker runs on jobs: settling them (ack, retry,
dead-letter), renewing them, promoting due ones and taking over stranded ones. One
builder per script in ``trioqueue/_lua/``, whose header states the ``KEYS``/``ARGV``
layout built here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from trioqueue._keys import GROUP, PartitionKeys
from trioqueue._scripts._call import Arg, Call
from trioqueue._scripts._reply import flag, optional_text, pairs, text, texts
from trioqueue._scripts._source import load

ACK, RETRY, DEAD, TOUCH = load("ack"), load("retry"), load("dead"), load("touch")
PROGRESS = load("progress")
PROMOTE, RECLAIM, RECLAIM_DEAD = load("promote"), load("reclaim"), load("reclaim_dead")

# (entry id, job id, outcome document or None, whether the caller chose the job id,
# attempt)
AckItem = tuple[str, str, bytes | None, bool, int]
# An event written by an acknowledgement before it settles its jobs: (kind, job id,
# attempt, error type, error); 'started' events get the consumer as their worker.
Started = tuple[str, str, int, str, str]


@attrs.frozen
class Acked:
    """Entries an acknowledgement did not settle: ``fenced`` (pending for another
    consumer) and ``gone`` (not pending at all: settled already)."""

    fenced: list[str]
    gone: list[str]


@attrs.frozen
class Tally:
    """Totals of jobs settled apart from an acknowledgement (by ``retry``, ``dead`` or
    ``reclaim_dead``) and of handler time, added to the history by the next one."""

    failed: int = 0
    retried: int = 0
    dead: int = 0
    handler_ms: int = 0

    def __bool__(self) -> bool:
        return bool(self.failed or self.retried or self.dead or self.handler_ms)


@attrs.frozen
class Signals:
    """What an acknowledgement writes besides settling jobs: the history hash of the
    current minute (``history_ttl_ms`` 0: none), events (``events_max`` 0: none)."""

    history_minute: int = 0
    history_ttl_ms: int = 0
    events_max: int = 0
    tally: Tally = Tally()
    started: Sequence[Started] = ()


def ack(
    keys: PartitionKeys,
    *,
    consumer: str,
    result_ttl_ms: int,
    jobs: Sequence[AckItem],
    cancelled: int = 0,
    signals: Signals = Signals(),
) -> Call[Acked]:
    """Acknowledge and delete ``jobs`` that ``consumer`` still owns, storing their
    outcome documents and releasing the unique keys of caller-chosen ids; the last
    ``cancelled`` of them were cancelled on request. ``signals``: the history and
    events written in the same call (see ``ack.lua``)."""
    call_keys = [keys.stream, keys.history(signals.history_minute), keys.events]
    args: list[Arg] = [GROUP, consumer, result_ttl_ms, len(jobs)]
    for entry_id, job_id, doc, unique, _ in jobs:
        u = 0
        if unique:
            call_keys.append(keys.unique(job_id))
            u = len(call_keys)
        if doc is None or result_ttl_ms <= 0:
            args += [entry_id, u, 0, ""]
        else:
            call_keys += keys.outcome(job_id)
            args += [entry_id, u, len(call_keys) - 2, doc]
    t = signals.tally
    events = signals.events_max
    args += [cancelled, events, signals.history_ttl_ms, t.failed, t.retried, t.dead]
    args += [t.handler_ms, len(signals.started) if events else 0]
    if events:
        for event in signals.started:
            args += event
        for _, job_id, _, _, attempt in jobs:
            args += [job_id, attempt]
    return Call(ACK, call_keys, args, _acked)


def _acked(raw: Any) -> Acked:
    return Acked(texts(raw[0]), texts(raw[1]))


def retry(
    keys: PartitionKeys,
    *,
    consumer: str,
    entry_id: str,
    delay_ms: int,
    payload: bytes,
    events_max: int = 0,
    job_id: str = "",
    attempt: int = 1,
    error_type: str = "",
    error: str = "",
) -> Call[bool]:
    """Move an owned entry to the delayed set for its next attempt (``payload``: the
    delayed-set document), with its ``failed`` and ``retrying`` events when
    ``events_max`` turns them on. True when moved, False when fenced."""
    args: list[Arg] = [GROUP, consumer, entry_id, delay_ms, payload, events_max, job_id]
    args += [attempt, error_type, error]
    return Call(RETRY, [keys.stream, keys.delayed, keys.events], args, flag)


def dead(
    keys: PartitionKeys,
    *,
    consumer: str,
    entry_id: str,
    job_id: str,
    result_ttl_ms: int,
    outcome: bytes,
    fields: Mapping[str, str],
    events_max: int = 0,
) -> Call[str | None]:
    """Move an owned entry to the dead letters as ``fields`` (plus ``failed_at``),
    storing ``outcome``, with its ``failed`` and ``dead`` events when ``events_max``
    turns them on. The dead-letter entry id, or None when fenced."""
    args: list[Arg] = [GROUP, consumer, entry_id, result_ttl_ms, outcome]
    for name, value in fields.items():
        args += [name, value]
    args.append(events_max)
    call_keys = [keys.stream, keys.dead, *keys.outcome(job_id), keys.unique(job_id)]
    call_keys.append(keys.events)
    return Call(DEAD, call_keys, args, optional_text)


@attrs.frozen
class Promoted:
    """``moved`` due jobs into the stream; the next one is due in ``wait_ms`` (None:
    the delayed set is empty)."""

    moved: int
    wait_ms: int | None


def promote(keys: PartitionKeys, *, limit: int) -> Call[Promoted]:
    """Move up to ``limit`` due jobs from the delayed set into the stream."""
    return Call(PROMOTE, [keys.stream, keys.delayed], [limit], _promoted)


def _promoted(raw: Any) -> Promoted:
    wait = int(raw[1])
    return Promoted(int(raw[0]), wait if wait >= 0 else None)


@attrs.frozen
class Claimed:
    """An entry taken over: its fields (as the client returned them), its delivery
    count and whether it is a suspect to run alone."""

    entry_id: str
    fields: dict[Any, Any]
    deliveries: int
    suspect: bool


@attrs.frozen
class Reclaimed:
    """What a reclaim took (``claimed``), left for ``reclaim_dead`` (``over``: entry id,
    job id), found deleted (``lost``) and left as suspects (``suspects_left``)."""

    claimed: list[Claimed]
    over: list[tuple[str, str]]
    lost: int
    suspects_left: int


def reclaim(
    keys: PartitionKeys,
    *,
    consumer: str,
    min_idle_ms: int,
    count: int,
    owner: str,
    max_deliveries: int,
    suspect_at: int,
    idle: bool,
    own: bool,
) -> Call[Reclaimed]:
    """Claim up to ``count`` entries idle ``min_idle_ms`` from ``owner`` (``""``: any
    other consumer; ``own``: ours too). See ``reclaim.lua`` for suspects."""
    args: list[Arg] = [
        GROUP,
        consumer,
        min_idle_ms,
        count,
        owner,
        max_deliveries,
        suspect_at,
        "1" if idle else "",
        "1" if own else "",
    ]
    return Call(RECLAIM, [keys.stream], args, _reclaimed)


def _reclaimed(raw: Any) -> Reclaimed:
    claimed = [
        Claimed(text(entry_id), pairs(flat), int(deliveries), bool(int(suspect)))
        for entry_id, flat, deliveries, suspect in raw[0]
    ]
    over = [(text(entry_id), text(job_id)) for entry_id, job_id in raw[1]]
    return Reclaimed(claimed, over, int(raw[2]), int(raw[3]))


@attrs.frozen
class ReclaimedDead:
    """Entries past ``max_deliveries`` moved to the dead letters, and found deleted."""

    dead: int
    lost: int


def reclaim_dead(
    keys: PartitionKeys,
    *,
    consumer: str,
    min_idle_ms: int,
    max_deliveries: int,
    worker: str,
    result_ttl_ms: int,
    own: bool,
    entries: Sequence[tuple[str, str]],
    events_max: int = 0,
) -> Call[ReclaimedDead]:
    """Dead-letter ``entries`` (entry id, job id) that ``reclaim`` listed as ``over``
    (with a ``dead`` event each when ``events_max`` turns them on)."""
    call_keys = [keys.stream, keys.dead, keys.events]
    args: list[Arg] = [
        GROUP,
        consumer,
        min_idle_ms,
        max_deliveries,
        worker,
        result_ttl_ms,
        "1" if own else "",
        events_max,
    ]
    for entry_id, job_id in entries:
        args += [entry_id, len(call_keys) + 1, job_id]
        call_keys += [*keys.outcome(job_id), keys.unique(job_id)]
    return Call(RECLAIM_DEAD, call_keys, args, lambda raw: ReclaimedDead(int(raw[0]), int(raw[1])))


@attrs.frozen
class Touched:
    """Entries no longer ours (``lost``) and those whose job was asked to cancel."""

    lost: list[str]
    cancel: list[str]


def touch(
    keys: PartitionKeys, *, consumer: str, entries: Sequence[tuple[str, str]]
) -> Call[Touched]:
    """Renew ``entries`` (entry id, job id) that ``consumer`` still owns."""
    call_keys = [keys.stream]
    args: list[Arg] = [GROUP, consumer]
    for entry_id, job_id in entries:
        call_keys.append(keys.cancel_marker(job_id))
        args.append(entry_id)
    return Call(TOUCH, call_keys, args, lambda raw: Touched(texts(raw[0]), texts(raw[1])))


def progress(
    keys: PartitionKeys,
    *,
    consumer: str,
    entry_id: str,
    job_id: str,
    attempt: int,
    value: bytes,
    ttl_ms: int,
    events_max: int,
) -> Call[bool]:
    """Store ``value`` (JSON) as the progress of a job ``consumer`` still runs, with a
    ``progress`` event when ``events_max`` turns them on. False when fenced."""
    args: list[Arg] = [GROUP, consumer, entry_id, value, ttl_ms, events_max, job_id, attempt]
    return Call(PROGRESS, [keys.stream, keys.progress(job_id), keys.events], args, flag)
