"""Typed calls of the scripts the clients run (``Client`` and ``SyncClient`` alike):
sending, finding and cancelling a job, re-sending dead letters. One builder per script
in ``trioqueue/_lua/``, whose header states the ``KEYS``/``ARGV`` layout built here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs

from trioqueue._keys import GROUP, PartitionKeys
from trioqueue._scripts._call import Arg, Call
from trioqueue._scripts._reply import pairs, text, texts
from trioqueue._scripts._source import load

SEND, CANCEL, FIND, DLQ_RETRY = load("send"), load("cancel"), load("find"), load("dlq_retry")
PAUSE = load("pause")

SendItem = tuple[str, str, bytes, str]  # (job id, wire type name, JSON body, key or "")


@attrs.frozen
class Sent:
    """Per job sent: its entry id (``""`` when delayed) and whether it was a duplicate."""

    entry_ids: list[str]
    duplicates: list[bool]


def send(
    keys: PartitionKeys,
    items: Sequence[SendItem],
    *,
    max_length: int,
    max_message_bytes: int,
    unique: bool,
    due: int,
    events_max: int = 0,
    trace: tuple[str, str] = ("", ""),
) -> Call[Sent]:
    """Enqueue ``items`` on one partition; ``unique``: the ids were chosen by the caller
    (each is enqueued at most once); ``due``: 0 now, > 0 epoch ms, < 0 minus a delay in
    ms; ``events_max``: the caller's event stream length (the meta hash's wins);
    ``trace``: the W3C (traceparent, tracestate) every job carries (``""``: none).
    Raises ``QueueFull``, ``MessageTooLarge`` or ``BrokerError`` (wrong key type)."""
    call_keys = [keys.stream, keys.meta, keys.delayed, keys.events]
    args: list[Arg] = [max_length, max_message_bytes, "1" if unique else "", due, len(items)]
    for job_id, type_name, body, key in items:
        args += [job_id, type_name, body, key]
        if unique:
            call_keys.append(keys.unique(job_id))
    args += [events_max, *trace]
    return Call(
        SEND,
        call_keys,
        args,
        _sent,
        queue=keys.queue,
        errors=frozenset({"QUEUEFULL", "TOOLARGE", "WRONGTYPE"}),
    )


def _sent(raw: Any) -> Sent:
    ids, dups = raw
    return Sent(texts(ids), [bool(int(d)) for d in dups])


CancelOutcome = Literal["removed", "running", "unknown"]


def cancel(
    keys: PartitionKeys,
    *,
    job_id: str,
    entry_id: str,
    result_ttl_ms: int,
    scan_limit: int,
    channel: str,
    outcome: bytes,
) -> Call[CancelOutcome]:
    """Cancel job ``job_id`` (at ``entry_id`` if known, else found within
    ``scan_limit`` entries); ``outcome`` is stored for a removed job."""
    call_keys = [
        keys.stream,
        keys.delayed,
        keys.cancel_marker(job_id),
        *keys.outcome(job_id),
        keys.unique(job_id),
        keys.meta,
        keys.events,
    ]
    args: list[Arg] = [GROUP, job_id, entry_id, result_ttl_ms, scan_limit, channel, outcome]
    return Call(CANCEL, call_keys, args, _cancelled)


_CANCEL_OUTCOMES: dict[str, CancelOutcome] = {
    "removed": "removed",
    "running": "running",
    "unknown": "unknown",
}


def _cancelled(raw: Any) -> CancelOutcome:
    return _CANCEL_OUTCOMES[text(raw)]


@attrs.frozen
class InStream:
    """A job found in its stream: ``pending`` is (owner, idle ms, deliveries) while a
    worker runs it."""

    entry_id: str
    fields: dict[str, str]
    pending: tuple[str, int, int] | None


@attrs.frozen
class InDelayed:
    """A job found in the delayed set: its document and due time (epoch ms)."""

    payload: bytes
    due_ms: int


def find(
    keys: PartitionKeys, *, job_id: str, entry_id: str, scan_limit: int
) -> Call[InStream | InDelayed | None]:
    """Where job ``job_id`` waits or runs (None: neither in the stream nor delayed)."""
    args: list[Arg] = [GROUP, job_id, entry_id, scan_limit]
    return Call(FIND, [keys.stream, keys.delayed], args, _found)


def _found(raw: Any) -> InStream | InDelayed | None:
    kind, where, what, pending = text(raw[0]), raw[1], raw[2], raw[3]
    if kind == "stream":
        fields = {text(k): text(v) for k, v in pairs(what).items()}
        running = (text(pending[0]), int(pending[1]), int(pending[2])) if pending else None
        return InStream(text(where), fields, running)
    if kind == "delayed":
        payload = where if isinstance(where, bytes) else str(where).encode()
        return InDelayed(payload, int(float(text(what))))
    return None


@attrs.frozen
class Resent:
    """Dead letters re-sent as fresh jobs, skipped (not job envelopes: they stay), and
    the id of the last dead letter looked at (``""`` if none)."""

    resent: int
    skipped: int
    last: str


def dlq_retry_ids(keys: PartitionKeys, ids: Sequence[str]) -> Call[Resent]:
    """Re-send the dead letters ``ids`` as fresh jobs (attempt 1)."""
    return Call(DLQ_RETRY, [keys.stream, keys.dead, keys.meta, keys.events], [0, *ids], _resent)


def dlq_retry_range(keys: PartitionKeys, *, start: str, end: str, count: int) -> Call[Resent]:
    """Re-send the next ``count`` dead letters from ``start`` up to ``end`` (ids, or
    ``(id`` for after it, as ``XRANGE`` takes them)."""
    call_keys = [keys.stream, keys.dead, keys.meta, keys.events]
    return Call(DLQ_RETRY, call_keys, [count, "", start, end], _resent)


def _resent(raw: Any) -> Resent:
    return Resent(int(raw[0]), int(raw[1]), text(raw[2]) if raw[2] else "")


def pause(keys: PartitionKeys, *, paused: bool, channel: str) -> Call[bool]:
    """Pause (``paused``) or resume the queue of ``keys`` (its partition 0) and tell
    the workers on ``channel``; the reply says whether its state changed."""
    args: list[Arg] = ["1" if paused else "", channel, keys.queue]
    return Call(PAUSE, [keys.paused], args, _changed)


def _changed(raw: Any) -> bool:
    return bool(int(raw))
