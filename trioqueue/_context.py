"""What a running handler can learn about its own job."""

from __future__ import annotations

import contextvars

import attrs

__all__ = ["JobContext", "current_job"]


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
