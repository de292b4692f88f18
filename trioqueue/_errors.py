"""Exceptions raised by trioqueue, and the ones handlers raise to steer a job.

Every exception with fields pickles by its fields (``__reduce__``), not by its
message: they cross process boundaries, since a ``run_in="process"`` handler raises
``Retry`` or ``Reject`` in a child process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trioqueue._job import Job

__all__ = [
    "BatchFailed",
    "BrokerAuthError",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "JobCancelled",
    "JobFailed",
    "MessageTooLarge",
    "NotReplicated",
    "QueueFull",
    "Reject",
    "Retry",
    "TrioqueueError",
    "UnknownMessageType",
]


class TrioqueueError(Exception):
    """Base class of every error trioqueue raises."""


class ConfigError(TrioqueueError):
    """The configuration is invalid; the message names each offending key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


class UnknownMessageType(TrioqueueError):
    """A message type has no handler registered on the App and no queue was given."""


class BrokerError(TrioqueueError):
    """The broker refused an operation or could not be reached."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached (refused, timed out, unknown host)."""


class BrokerAuthError(BrokerError):
    """The broker rejected our credentials or permissions; retrying will not help."""


class NotReplicated(BrokerError):
    """A send reached the primary but not as many replicas as asked within
    ``wait_timeout`` (``[broker] wait_replicas``), or its local AOF fsync was not
    confirmed (``wait_local_fsync``). Its outcome is unknown: the jobs may exist (and
    run) or be lost in a failover. Sending them again with the same ``job_id`` is safe.

    ``jobs`` are the jobs of the call (all of a ``send_many``); ``replicas`` is the
    fewest replicas any part of it reached, ``wanted`` how many were asked for;
    ``fsynced`` is False when a local fsync was asked for and not confirmed, else None
    or True.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        replicas: int,
        wanted: int,
        timeout: float,
        fsynced: bool | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.replicas = replicas
        self.wanted = wanted
        self.timeout = timeout
        self.fsynced = fsynced
        what = f"job {self.jobs[0].id}" if len(self.jobs) == 1 else f"{len(self.jobs)} jobs"
        short = []
        if replicas < wanted:
            short.append(f"{replicas} of {wanted} replicas acknowledged")
        if fsynced is False:
            short.append("the primary's AOF fsync was not confirmed")
        super().__init__(
            f"send of {what} not confirmed within {timeout}s: {' and '.join(short)}; "
            "it may or may not have been kept (sending again with the same job_id is safe)"
        )

    @property
    def job(self) -> Job:
        """The first (for ``send``: the only) job of the call."""
        return self.jobs[0]

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _not_replicated,
            (self.jobs, self.replicas, self.wanted, self.timeout, self.fsynced),
        )


def _not_replicated(
    jobs: list[Job], replicas: int, wanted: int, timeout: float, fsynced: bool | None
) -> NotReplicated:
    return NotReplicated(jobs, replicas=replicas, wanted=wanted, timeout=timeout, fsynced=fsynced)


class QueueFull(TrioqueueError):
    """The queue already holds ``max_length`` unprocessed jobs; nothing was enqueued."""

    def __init__(self, queue: str, max_length: int) -> None:
        self.queue = queue
        self.max_length = max_length
        super().__init__(
            f"queue {queue!r} is full: it holds {max_length} unprocessed jobs (max_length);"
            " nothing was enqueued"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.queue, self.max_length))


class MessageTooLarge(TrioqueueError):
    """An encoded message body is larger than the queue's ``max_message_bytes``."""

    def __init__(self, queue: str, size: int, limit: int) -> None:
        self.queue = queue
        self.size = size
        self.limit = limit
        super().__init__(
            f"message for queue {queue!r} is {size} bytes, over max_message_bytes={limit}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.queue, self.size, self.limit))


class JobFailed(TrioqueueError):
    """The job was dead-lettered; ``error_type`` and ``error`` say why."""

    def __init__(self, job_id: str, error_type: str, error: str) -> None:
        self.job_id = job_id
        self.error_type = error_type
        self.error = error
        super().__init__(f"job {job_id} failed: {error_type}: {error}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.error_type, self.error))


class JobCancelled(TrioqueueError):
    """The job was cancelled before it finished."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} was cancelled")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id,))


class Retry(Exception):
    """Raise from a handler to retry the job after ``delay`` seconds (no jitter).

    Counts as an attempt: when the queue's ``retries`` are used up the job is
    dead-lettered instead.
    """

    def __init__(self, delay: float = 0.0, reason: str = "") -> None:
        if delay < 0:
            raise ValueError("Retry delay must be >= 0")
        self.delay = delay
        self.reason = reason
        super().__init__(reason or f"retry requested in {delay}s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.delay, self.reason))


class BatchFailed(Exception):
    """Raise from a batch handler when only some messages failed.

    ``failed`` holds their indexes in the list the handler got; those are retried
    (or dead-lettered) one by one, the others are acknowledged.
    """

    def __init__(self, failed: list[int], reason: str = "") -> None:
        self.failed = list(failed)
        self.reason = reason
        super().__init__(reason or f"{len(self.failed)} message(s) of the batch failed")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.failed, self.reason))


class Reject(Exception):
    """Raise from a handler to dead-letter the job at once, without retrying."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))
