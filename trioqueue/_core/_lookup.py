"""Following a job: where it is (``status``), waiting for its outcome (``result``) and
cancelling it (``cancel``), given its ``Job`` or only its id.

A bare id is looked for in the queue given, else in every queue of the App, in all
their partitions at once: one round of ``GET``s of the outcome keys and, only if none
is there, one round of ``find`` script calls, each pipelined. The partition the id
hashes to comes first, so that a job sent with ``job_id=`` and no key wins a tie.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, cast

import attrs
import orjson

from trioqueue import _scripts as scripts
from trioqueue._core._base import Core
from trioqueue._core._commands import BestEffort, BLPop, Delete, Get, Op, Pipeline, SetPx, Sleep
from trioqueue._envelope import Envelope
from trioqueue._errors import JobCancelled, JobFailed
from trioqueue._job import Job, JobState, JobStatus
from trioqueue._keys import control_channel
from trioqueue._outcome import CANCELLED_WAITING, Outcome
from trioqueue._routing import home_first

# A waiting client renews its "someone waits" marker this often (see ``result``).
WAIT_KEY_MS = 15_000
# The longest a wait blocks before it re-reads the outcome and renews its marker.
WAIT_ROUND = 5.0
# How far a lookup by bare job id scans a partition's stream for a waiting job.
SCAN_LIMIT = 100_000
# How often ``result`` re-reads the outcome keys of a job that no queue knows yet.
POLL_INTERVAL = 1.0
_SETTLED = ("succeeded", "failed", "cancelled")


def status(core: Core, job: Job | str, queue: str | None) -> Op[JobStatus]:
    """The job's current state (see ``Client.status``)."""
    candidates = yield from _candidates(core, job, queue)
    found = yield from _first_known(core, candidates, with_progress=True)
    if found is not None:
        return found[1]
    if isinstance(job, Job):
        return JobStatus(job.id, job.queue, "unknown")
    return JobStatus(job, queue or "", "unknown")


def cancel(core: Core, job: Job | str, queue: str | None) -> Op[str]:
    """Cancel a job (see ``Client.cancel``)."""
    candidates = yield from _candidates(core, job, queue)
    if not candidates:
        return "unknown"
    target = candidates[0]
    if len(candidates) > 1:
        found = yield from _first_known(core, candidates)
        if found is None or found[1].state in _SETTLED:
            return "unknown"  # the script would find nothing to cancel either
        target = found[0]
    keys = core.keys(target.queue, target.partition)
    ttl_ms = int(core.queue_settings(target.queue).result_ttl * 1000)
    outcome: scripts.CancelOutcome = yield scripts.cancel(
        keys,
        job_id=target.id,
        entry_id=target.entry_id,
        result_ttl_ms=ttl_ms,
        scan_limit=SCAN_LIMIT,
        channel=control_channel(core.prefix),
        outcome=CANCELLED_WAITING,
    )
    return outcome


def result(
    core: Core,
    job: Job | str,
    queue: str | None,
    *,
    timeout: float,
    clock: Callable[[], float],
    too_slow: Callable[[str], Exception],
) -> Op[Any]:
    """Wait for the job's outcome (see ``Client.result``); ``clock`` is the driver's
    monotonic clock, ``too_slow`` builds the error raised when ``timeout`` passes."""
    candidates = yield from _candidates(core, job, queue)
    target: Job | None = candidates[0] if candidates else None
    if len(candidates) > 1:
        found = yield from _first_known(core, candidates)
        if found is not None:
            target = found[0]
        elif queue is None:
            target = None  # known nowhere yet: watch every partition's outcome key
    job_id = job.id if isinstance(job, Job) else job
    deadline = _Deadline(
        clock() + timeout, clock, lambda: too_slow(f"no result for job {job_id} within {timeout}s")
    )
    if target is None:
        return (yield from _watch(core, candidates, deadline))
    return (yield from _wait(core, target, deadline))


@attrs.frozen
class _Deadline:
    at: float
    clock: Callable[[], float]
    expired: Callable[[], Exception]

    def remaining(self) -> float:
        """Seconds left; raises the driver's timeout error when none are."""
        left = self.at - self.clock()
        if left <= 0:
            raise self.expired()
        return left


def _wait(core: Core, job: Job, deadline: _Deadline) -> Op[Any]:
    """Wait for the outcome of ``job`` in its partition, woken by the settling script."""
    keys = core.keys(job.queue, job.partition)
    wait_key, done_key = keys.result_wait(job.id), keys.result_done(job.id)
    try:
        while True:
            # Tell the settling script someone waits, then read: a result stored
            # between the two is seen by the read; one stored after it pushes a
            # wake-up. Refreshed each round, so a long wait never loses it.
            yield SetPx(wait_key, b"1", WAIT_KEY_MS)
            doc = yield Get(keys.result(job.id))
            if doc is not None:
                return _value(core, job, doc)
            yield BLPop(done_key, min(deadline.remaining(), WAIT_ROUND))
    finally:
        yield BestEffort(Delete((wait_key, done_key)))


def _watch(core: Core, candidates: Sequence[Job], deadline: _Deadline) -> Op[Any]:
    """Wait for an outcome in any of ``candidates``, re-reading them now and then: a
    job that none of them knew may yet be sent, to any of them."""
    while True:
        docs = yield from _outcomes(core, candidates)
        for candidate, doc in zip(candidates, docs, strict=True):
            if doc is not None:
                return _value(core, candidate, doc)
        yield Sleep(min(deadline.remaining(), POLL_INTERVAL))


def _candidates(core: Core, job: Job | str, queue: str | None) -> Op[list[Job]]:
    """Where the job may be, most likely first: the ``Job`` itself, else every
    partition of ``queue`` (or of each of the App's queues)."""
    if isinstance(job, Job):
        return [job]
    queues = [queue] if queue is not None else core.app.queues
    counts = yield from core.partition_counts(queues)
    return [Job(id=job, queue=q, partition=p) for q in queues for p in home_first(job, counts[q])]


def _outcomes(
    core: Core, candidates: Sequence[Job], *, with_progress: bool = False
) -> Op[list[bytes | None]]:
    """Each candidate's outcome document (None: none stored), in one round trip;
    ``with_progress``: then each one's progress value too, after them."""
    if not candidates:
        return []
    gets = [Get(core.keys(c.queue, c.partition).result(c.id)) for c in candidates]
    if with_progress:
        gets += [Get(core.keys(c.queue, c.partition).progress(c.id)) for c in candidates]
    docs: list[bytes | None] = yield Pipeline(tuple(gets))
    return docs


def _first_known(
    core: Core, candidates: Sequence[Job], *, with_progress: bool = False
) -> Op[tuple[Job, JobStatus] | None]:
    """The first candidate that knows the job, as a ``Job`` with its entry id when it is
    in a stream, and the job's status there (``with_progress``: with its progress)."""
    docs = yield from _outcomes(core, candidates, with_progress=with_progress)
    progress = docs[len(candidates) :] if with_progress else [None] * len(candidates)
    found = yield from _located(core, candidates, docs[: len(candidates)])
    if found is None:
        return None
    where, known = found
    value = next(
        (p for c, p in zip(candidates, progress, strict=True) if c.partition == where.partition
         and c.queue == where.queue),
        None,
    )  # fmt: skip
    if value is not None:
        known = attrs.evolve(known, progress=orjson.loads(value))
    return where, known


def _located(
    core: Core, candidates: Sequence[Job], docs: Sequence[bytes | None]
) -> Op[tuple[Job, JobStatus] | None]:
    for candidate, doc in zip(candidates, docs, strict=True):
        if doc is not None:
            return candidate, _settled_status(candidate, Outcome.from_json(doc))
    if not candidates:
        return None
    finds: list[scripts.InStream | scripts.InDelayed | None] = yield Pipeline(
        tuple(
            scripts.find(
                core.keys(c.queue, c.partition),
                job_id=c.id,
                entry_id=c.entry_id,
                scan_limit=SCAN_LIMIT,
            )
            for c in candidates
        )
    )
    for candidate, found in zip(candidates, finds, strict=True):
        if isinstance(found, scripts.InStream):
            located = attrs.evolve(candidate, entry_id=found.entry_id)
            return located, _stream_status(candidate, found)
        if isinstance(found, scripts.InDelayed):
            return candidate, _delayed_status(candidate, found)
    return None


def _datetime(ms: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC) if ms > 0 else None


def _settled_status(job: Job, outcome: Outcome) -> JobStatus:
    return JobStatus(
        job.id,
        job.queue,
        cast(JobState, outcome.state),  # the states trioqueue writes are all JobStates
        attempts=outcome.attempts,
        enqueued_at=_datetime(outcome.enqueued_ms),
        finished_at=_datetime(outcome.finished_ms),
        error=outcome.error_text,
    )


def _stream_status(job: Job, found: scripts.InStream) -> JobStatus:
    env = Envelope.from_entry(found.entry_id, found.fields, strict=False)
    common: dict[str, Any] = {
        "attempts": env.attempt,
        "enqueued_at": _datetime(env.enqueued_ms),
        "error": env.error or None,
    }
    if found.pending is not None:
        owner, idle_ms, _ = found.pending
        started = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=idle_ms)
        return JobStatus(job.id, job.queue, "active", worker=owner, started_at=started, **common)
    return JobStatus(job.id, job.queue, "queued", **common)


def _delayed_status(job: Job, found: scripts.InDelayed) -> JobStatus:
    env = Envelope.from_delayed(found.payload)
    return JobStatus(
        job.id,
        job.queue,
        "retrying" if env.attempt > 1 else "scheduled",
        attempts=env.attempt,
        enqueued_at=_datetime(env.enqueued_ms),
        due_at=_datetime(found.due_ms),
        error=env.error or None,
    )


def _value(core: Core, job: Job, raw: bytes) -> Any:
    """The job's result from its outcome document, structured into the handler's
    return type when the job's type is known; a failure or cancel is raised."""
    outcome = Outcome.from_json(raw)
    if outcome.state == "failed":
        raise JobFailed(job.id, outcome.error_type, outcome.error)
    if outcome.state == "cancelled":
        raise JobCancelled(job.id)
    handler = core.app.handler_for_name(job.type_name) if job.type_name else None
    if handler is not None and handler.returns_value:
        return core.app.converter.structure(outcome.result, handler.return_type)
    return outcome.result
