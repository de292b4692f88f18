"""The dead-letter entry: how a job that gave up is kept in ``P:{Q:N}:dead``.

This module owns both directions of that format for Python: the worker builds an
entry's fields with ``job_fields`` (a job it ran) or ``raw_fields`` (an entry that was
not a valid envelope), stamps them with ``stamped`` and derives the job's outcome with
``failure_outcome``; clients read entries back as ``DeadLetter``. The reclaim script
writes the one other kind, for ``MaxDeliveriesExceeded``, and the dead-letter script adds
``failed_at``. The specification is docs/reference/wire-format.md ("Dead-letter entries").

Wire decisions: every field is a string; an entry keeps the job's envelope fields (see
``_envelope``) so that it can be sent again as it was; ``attempts`` counts attempts made
(absent for ``MaxDeliveriesExceeded``, which keeps ``attempt``); ``failed_at`` is
milliseconds since the epoch by the server's clock; unknown fields are kept and shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs

from trioqueue import _outcome
from trioqueue._envelope import (
    F_ATTEMPT,
    F_BODY,
    F_ENQUEUED,
    F_ERROR,
    F_ID,
    F_KEY,
    F_TRACEPARENT,
    F_TRACESTATE,
    F_TYPE,
    Envelope,
    entry_fields_text,
)

__all__ = ["DeadLetter"]

F_ERROR_TYPE = "error_type"
F_ATTEMPTS = "attempts"
F_TRACEBACK = "traceback"
F_QUEUE = "queue"
F_WORKER = "worker"
F_SOURCE_ID = "source_id"
F_FAILED_AT = "failed_at"
# The tail of a traceback is where the error is; the head is the worker's own frames.
TRACEBACK_CHARS = 4000


def job_fields(
    env: Envelope, error_type: str, error: str, *, traceback: str = ""
) -> dict[str, str]:
    """The fields of a dead letter for a job that ran (or could not be handled)."""
    fields = {
        F_ID: env.job_id,
        F_TYPE: env.type_name,
        F_BODY: env.body.decode("utf-8", "replace"),
        F_ATTEMPT: str(env.attempt),
        F_ENQUEUED: str(env.enqueued_ms),
        F_ERROR_TYPE: error_type,
        F_ERROR: error,
        F_ATTEMPTS: str(env.attempt),
    }
    if env.key:
        fields[F_KEY] = env.key
    if env.traceparent:
        # A re-send of the dead letter joins the trace of the job's first send.
        fields[F_TRACEPARENT] = env.traceparent
        if env.tracestate:
            fields[F_TRACESTATE] = env.tracestate
    if traceback:
        fields[F_TRACEBACK] = traceback[-TRACEBACK_CHARS:]
    return fields


def raw_fields(fields: Mapping[Any, Any], error_type: str, error: str) -> dict[str, str]:
    """The fields of a dead letter for an entry that is not a valid envelope: whatever
    it had, and why it was refused."""
    text = entry_fields_text(fields)
    why = {F_ERROR_TYPE: error_type, F_ERROR: error, F_ATTEMPTS: text.get(F_ATTEMPT, "1")}
    return {**text, **why}


def stamped(
    fields: Mapping[str, str], *, queue: str, worker: str, source_id: str
) -> dict[str, str]:
    """``fields`` plus where the job died (the dead-letter script adds when)."""
    return {**fields, F_QUEUE: queue, F_WORKER: worker, F_SOURCE_ID: source_id}


def failure_outcome(fields: Mapping[str, str]) -> bytes:
    """The outcome document of the job a dead letter with ``fields`` stands for."""
    return _outcome.failed(
        fields.get(F_ERROR_TYPE, ""),
        fields.get(F_ERROR, ""),
        attempts=int(fields.get(F_ATTEMPTS, "1") or 1),
        enqueued=int(fields.get(F_ENQUEUED, "0") or 0),
    )


@attrs.frozen
class DeadLetter:
    """One entry of a dead-letter stream: the job and why it ended there."""

    id: str
    job_id: str
    type_name: str
    body: str
    error_type: str
    error: str
    attempts: int
    worker: str
    failed_at: dt.datetime | None
    traceback: str = ""
    fields: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    partition: int = 0

    @classmethod
    def from_entry(cls, entry_id: str, raw: Mapping[Any, Any], partition: int = 0) -> DeadLetter:
        """Read a dead-letter entry (fields as bytes or text) of ``partition``."""
        f = entry_fields_text(raw)
        failed = f.get(F_FAILED_AT)
        try:
            attempts = int(f.get(F_ATTEMPTS, f.get(F_ATTEMPT, "1")))
        except ValueError:
            attempts = 0
        return cls(
            id=entry_id,
            job_id=f.get(F_ID, ""),
            type_name=f.get(F_TYPE, ""),
            body=f.get(F_BODY, ""),
            error_type=f.get(F_ERROR_TYPE, ""),
            error=f.get(F_ERROR, ""),
            attempts=attempts,
            worker=f.get(F_WORKER, ""),
            failed_at=(
                dt.datetime.fromtimestamp(int(failed) / 1000, tz=dt.UTC)
                if failed and failed.isdigit()
                else None
            ),
            traceback=f.get(F_TRACEBACK, ""),
            fields=f,
            partition=partition,
        )
