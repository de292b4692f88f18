"""What a running handler can learn about its own job."""

from __future__ import annotations

import contextvars

import attrs

__all__ = ["JobContext", "current_job"]


@attrs.frozen
class JobContext:
    """The job a handler is running.

    ``deliveries`` counts how many times the broker handed this entry to a worker;
    together with ``entry_id`` it is a fencing token for side effects: a later
    delivery of the same job always has a higher ``deliveries`` or a newer
    ``entry_id`` (retries re-enqueue under a new entry id).
    """

    job_id: str
    queue: str
    partition: int
    attempt: int
    deliveries: int
    entry_id: str
    worker: str


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("trioqueue_job")


def current_job() -> JobContext:
    """The context of the job the calling handler runs; ``LookupError`` outside one."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("current_job() called outside a trioqueue handler") from None
