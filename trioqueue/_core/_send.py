"""Sending: routing and encoding messages, then one send-script call per queue,
partition and chunk."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from trioqueue import _scripts as scripts
from trioqueue import _tracing as tracing
from trioqueue._core._base import Core
from trioqueue._core._commands import Op, Replicated
from trioqueue._envelope import new_job_id, new_job_ids
from trioqueue._errors import MessageTooLarge, NotReplicated
from trioqueue._job import Job
from trioqueue._routing import due_ms, partition_for

# A send script call stays well under the server's busy threshold with this many jobs.
SEND_CHUNK = 1000

Item = scripts.SendItem  # (job id, wire type name, JSON body, key or "")
Positioned = list[tuple[int, Item]]  # items with their index in the caller's input


def item(
    core: Core, msg: object, queue: str | None, job_id: str | None, key: str | None
) -> tuple[str, Item]:
    """The queue ``msg`` goes to, and it encoded for the send script."""
    q, type_name = core.app.route(msg, queue)
    if job_id is not None and not job_id:
        raise ValueError("job_id must not be empty")
    return q, (job_id or new_job_id(), type_name, core.encode(msg), key or "")


def send(
    core: Core,
    msg: object,
    *,
    queue: str | None,
    job_id: str | None,
    key: str | None,
    delay: float | dt.timedelta | None,
    at: dt.datetime | None,
) -> Op[Job]:
    """Enqueue one message (see ``Client.send``)."""
    q, encoded = item(core, msg, queue, job_id, key)
    due = due_ms(delay, at)
    partition = partition_for(key or job_id, (yield from core.partitions(q)))
    unique = job_id is not None
    jobs = yield from send_encoded(core, q, [encoded], unique=unique, due=due, partition=partition)
    return jobs[0]


def send_many(
    core: Core,
    msgs: Iterable[object],
    *,
    queue: str | None,
    key: Callable[[Any], str] | None,
) -> Op[list[Job]]:
    """Enqueue many messages, jobs in the order of ``msgs`` (see ``Client.send_many``)."""
    by_queue: dict[str, Positioned] = {}
    listed = list(msgs)
    count = len(listed)
    ids = new_job_ids(count)
    # Everything is routed and encoded before the first send: a message that cannot be
    # sent fails the whole call with nothing enqueued.
    for i, msg in enumerate(listed):
        q, encoded = item(core, msg, queue, ids[i], key(msg) if key is not None else None)
        by_queue.setdefault(q, []).append((i, encoded))
    counts = yield from core.partition_counts(list(by_queue))
    out: list[Job | None] = [None] * count
    # Chunks short of their confirmation: the others are still sent, then one
    # NotReplicated names every job of the call and the fewest replicas reached.
    short: list[NotReplicated] = []
    for q, p, chunk in _chunks(by_queue, counts):
        try:
            jobs = yield from send_encoded(core, q, [encoded for _, encoded in chunk], partition=p)
        except NotReplicated as exc:
            short.append(exc)
            jobs = exc.jobs
        for (i, _), job in zip(chunk, jobs, strict=True):
            out[i] = job
    sent = [job for job in out if job is not None]
    if short:
        fsynced = False if any(e.fsynced is False for e in short) else short[0].fsynced
        raise NotReplicated(
            sent,
            replicas=min(e.replicas for e in short),
            wanted=short[0].wanted,
            timeout=short[0].timeout,
            fsynced=fsynced,
        )
    return sent


def _chunks(
    by_queue: dict[str, Positioned], partitions: dict[str, int]
) -> list[tuple[str, int, Positioned]]:
    """Split each queue's items by partition, then into script-sized chunks."""
    out = []
    for q, items in by_queue.items():
        by_partition: dict[int, Positioned] = {}
        for pos, encoded in items:
            p = partition_for(encoded[3] or None, partitions[q])
            by_partition.setdefault(p, []).append((pos, encoded))
        for p, part in sorted(by_partition.items()):
            for start in range(0, len(part), SEND_CHUNK):
                out.append((q, p, part[start : start + SEND_CHUNK]))
    return out


def send_encoded(
    core: Core,
    queue: str,
    items: Sequence[Item],
    *,
    unique: bool = False,
    due: int = 0,
    partition: int = 0,
) -> Op[list[Job]]:
    """Enqueue already-encoded items on one partition (see ``Client.send_encoded``)."""
    tracer = tracing.tracer()
    if tracer is None:
        untraced = tracing.NO_TRACE
        return (yield from _send_traced(core, queue, items, unique, due, partition, untraced))
    job_ids = [job_id for job_id, _, _, _ in items]
    with tracing.producer(tracer, queue, partition, job_ids, due=due) as trace:
        return (yield from _send_traced(core, queue, items, unique, due, partition, trace))


def _send_traced(
    core: Core,
    queue: str,
    items: Sequence[Item],
    unique: bool,
    due: int,
    partition: int,
    trace: tracing.Trace,
) -> Op[list[Job]]:
    settings = core.queue_settings(queue)
    for _, _, body, _ in items:
        if len(body) > settings.max_message_bytes:
            raise MessageTooLarge(queue, len(body), settings.max_message_bytes)
    call = scripts.send(
        core.keys(queue, partition),
        items,
        max_length=settings.max_length or 0,
        max_message_bytes=settings.max_message_bytes,
        unique=unique,
        due=due,
        events_max=settings.events_max_length if settings.events else 0,
        trace=trace,
    )
    d = core.durability
    if not d.waits:
        sent: scripts.Sent = yield call
        return _jobs(queue, partition, items, sent)
    timeout_ms = max(1, round(d.timeout * 1000))
    sent, replicas, fsynced = yield Replicated(call, d.replicas, timeout_ms, d.local_fsync)
    jobs = _jobs(queue, partition, items, sent)
    if replicas < d.replicas or fsynced is False:
        raise NotReplicated(
            jobs, replicas=replicas, wanted=d.replicas, timeout=d.timeout, fsynced=fsynced
        )
    return jobs


def _jobs(queue: str, partition: int, items: Sequence[Item], sent: scripts.Sent) -> list[Job]:
    # Positional: keyword arguments cost a microsecond per job of a send_many.
    return [
        Job(job_id, queue, partition, entry_id, type_name, duplicate)
        for (job_id, type_name, _, _), entry_id, duplicate in zip(
            items, sent.entry_ids, sent.duplicates, strict=True
        )
    ]
