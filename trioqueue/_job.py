"""What a client hands back about a job: where it went (``Job``) and where it is now
(``JobStatus``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import attrs

__all__ = ["Job", "JobState", "JobStatus"]


@attrs.frozen
class Job:
    """A job that was enqueued: its ``id`` and where it went."""

    id: str
    queue: str
    partition: int = 0
    entry_id: str = ""
    type_name: str = ""
    duplicate: bool = False
    """True when ``send(job_id=...)`` found that job already enqueued: nothing was added."""


JobState = Literal[
    "queued", "scheduled", "active", "retrying", "succeeded", "failed", "cancelled", "unknown"
]


@attrs.frozen
class JobStatus:
    """Where a job is in its life, as far as the broker knows.

    ``queued``: waiting in its stream; ``scheduled``: delayed (``delay=``/``at=``);
    ``active``: delivered to a worker (``worker``, ``started_at``); ``retrying``: a
    failed attempt waits for its backoff (``due_at``, ``error``); ``succeeded``,
    ``failed`` (dead-lettered) and ``cancelled`` are kept for ``result_ttl``;
    ``unknown``: never sent, or its outcome expired.

    ``progress`` is the latest value its handler passed to ``report_progress`` (None
    if it reported none), kept while it runs and for ``result_ttl`` after.
    """

    job_id: str
    queue: str
    state: JobState
    attempts: int = 0
    enqueued_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    worker: str | None = None
    error: str | None = None
    progress: Any = None
