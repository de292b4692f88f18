"""Job events: the wire format of a partition's event stream, and ``JobEvent``.

Scripts append one entry per state change of a job to ``P:{Q:N}:events`` when the
queue has ``events = true`` (``emit.lua``), trimmed to about ``events_max_length``
entries. Fields: ``kind``, ``job``, and by kind ``attempt``, ``type`` (sent), ``due``
(sent later, retrying: epoch ms), ``worker`` (started), ``error_type`` and ``error``
(failed, dead), ``progress`` (JSON). When it happened is the entry id's time.

A queue with several partitions has one stream each, so a position in the queue's
events is one entry id per partition: the cursor, ``JobEvent.id``, is those ids
joined by commas in partition order (one partition: just its entry id). A bare
entry id given as ``since`` applies to every partition (``"0"``: from the oldest kept).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import orjson

__all__ = ["EVENT_KINDS", "EventKind", "JobEvent", "cursor", "event_from_entry", "positions"]

EventKind = Literal[
    "sent", "started", "succeeded", "failed", "retrying", "dead", "cancelled", "progress"
]
EVENT_KINDS: tuple[EventKind, ...] = (
    "sent",
    "started",
    "succeeded",
    "failed",
    "retrying",
    "dead",
    "cancelled",
    "progress",
)
START = "0-0"


@attrs.frozen
class JobEvent:
    """One state change of a job, as ``Client.events`` yields it.

    ``id`` is a cursor: ``client.events(queue, since=event.id)`` resumes right after
    this event (for a queue with several partitions it holds a position in each).
    ``entry_id`` is the event's own id in its partition's stream; ``at`` when it was
    written (the server's clock). ``kind``:

    - ``sent``: enqueued (``type_name``; ``due_at`` when sent for later);
    - ``started``: a worker (``worker``) began an attempt (``attempt``);
    - ``succeeded`` / ``cancelled``: acknowledged as such;
    - ``failed``: an attempt failed (``error_type``, ``error``); ``retrying`` or
      ``dead`` follows;
    - ``retrying``: attempt ``attempt`` is scheduled (``due_at``; an ordered queue
      retries in place, without one);
    - ``dead``: moved to the dead letters (``error_type``, ``error``);
    - ``progress``: the handler reported ``progress``.
    """

    id: str
    kind: EventKind
    job_id: str
    queue: str
    partition: int
    at: dt.datetime
    entry_id: str
    attempt: int | None = None
    type_name: str | None = None
    worker: str | None = None
    error_type: str | None = None
    error: str | None = None
    progress: Any = None
    due_at: dt.datetime | None = None


def positions(since: str | None, partitions: int) -> list[str] | None:
    """The per-partition entry ids a cursor stands for (None: from now on, to be
    resolved to each stream's newest entry). Partitions the cursor does not cover
    (added since) start from their oldest event."""
    if since is None or since == "$":
        return None
    parts = [p.strip() for p in since.split(",")]
    if len(parts) == 1:
        one = START if parts[0] in ("0", "") else parts[0]
        return [one] * partitions
    parts = [p or START for p in parts[:partitions]]
    return parts + [START] * (partitions - len(parts))


def cursor(ids: Sequence[str]) -> str:
    """The cursor for a position in each partition (see the module docstring)."""
    return ",".join(ids)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(value: Any) -> dt.datetime | None:
    if value is None or value == b"" or value == "":
        return None
    return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)


def event_from_entry(
    queue: str, partition: int, entry_id: str, fields: Mapping[Any, Any], position: str
) -> JobEvent | None:
    """An event stream entry as a ``JobEvent`` (``position``: its cursor); None for an
    entry that is not one (an unknown kind)."""
    f = {_text(k): v for k, v in fields.items()}
    kind = _text(f.get("kind", b""))
    if kind not in EVENT_KINDS:
        return None
    attempt = f.get("attempt")
    progress = f.get("progress")
    return JobEvent(
        id=position,
        kind=kind,  # checked against EVENT_KINDS above
        job_id=_text(f.get("job", b"")),
        queue=queue,
        partition=partition,
        at=dt.datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, tz=dt.UTC),
        entry_id=entry_id,
        attempt=int(attempt) if attempt not in (None, b"", "") else None,
        type_name=_text(f["type"]) if "type" in f else None,
        worker=_text(f["worker"]) if "worker" in f else None,
        error_type=_text(f["error_type"]) if "error_type" in f else None,
        error=_text(f["error"]) if "error" in f else None,
        progress=orjson.loads(progress) if progress is not None else None,
        due_at=_ms(f.get("due")),
    )
