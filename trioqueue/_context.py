"""What a running handler can learn about its own job, and report about it."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

__all__ = ["JobContext", "current_job", "report_progress"]


@attrs.frozen
class JobContext:
    """The job a handler is running.

    ``deliveries`` counts how many times the broker handed this entry to a worker;
    ``epoch`` is the lease epoch of the partition on ordered queues (0 on shared
    queues), increased each time the partition changes hands. ``fencing_token``
    combines them: a later delivery of the same job, or the same partition under a
    new owner, always has a larger token, so a database write guarded by it can
    reject a zombie's late write.
    """

    job_id: str
    queue: str
    partition: int
    attempt: int
    deliveries: int
    entry_id: str
    worker: str
    epoch: int = 0

    @property
    def fencing_token(self) -> tuple[int, int]:
        """(partition epoch, deliveries): compare as a tuple; larger is newer."""
        return (self.epoch, self.deliveries)


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("trioqueue_job")


def current_job() -> JobContext:
    """The context of the job the calling handler runs; ``LookupError`` outside one."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_job() called outside a trioqueue handler") from None


# Set by each runner task of a worker: stores a job's progress (see Settler.progress).
_reporter: contextvars.ContextVar[Callable[[JobContext, Any], Awaitable[bool]]] = (
    contextvars.ContextVar("trioqueue_progress")
)


async def report_progress(value: Any) -> bool:
    """Store ``value`` as the latest progress of the job the calling handler runs.

    ``value`` is a float from 0 to 1 by convention, or anything JSON-serialisable
    (attrs instances are unstructured first). It is kept while the job runs and for
    ``result_ttl`` after (at least an hour): ``client.status(job).progress`` and
    ``trioqueue status --job ID`` show it. With the queue's ``events`` on, a
    ``progress`` event is written too.

    Fenced like an acknowledgement: it returns False, storing nothing, when this
    worker no longer owns the job (another worker took it over); the handler may then
    stop early. ``LookupError`` outside an async handler run by a worker.
    """
    job = current_job()
    report = _reporter.get(None)
    if report is None:
        raise LookupError("report_progress() called outside a handler run by a trioqueue worker")
    return await report(job, value)
