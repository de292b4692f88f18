"""The outcome document: how a settled job's end is stored under ``P:{Q:N}:result:J``.

Written by the worker when a job settles (``succeeded``, ``failed``, ``cancelled``) and
by the cancel script for a job removed while waiting (``CANCELLED_WAITING``); read by
both clients' ``result`` and ``status`` (``Outcome.from_json``). The specification is
docs/reference/wire-format.md ("Outcome documents"); the reclaim script writes the one
other document, for ``MaxDeliveriesExceeded``, in the same shape.

Wire decisions, a promise to programs in other languages:

- a JSON object; ``state`` is ``"succeeded"``, ``"failed"`` or ``"cancelled"``;
- ``finished`` and ``enqueued`` are milliseconds since the epoch (``finished`` by the
  worker's clock, ``enqueued`` by the server's, as in the envelope); ``attempts`` counts
  attempts made;
- ``result`` is the handler's return value as the App's converter unstructures it
  (absent for ``None`` and for the jobs of a batch handler; readers take absent as
  ``null``);
- ``error_type`` and ``error`` (a failure only) are the exception's class name and text;
- every field but ``state`` may be absent: a reader takes absent numbers as unknown.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import orjson

# The document the cancel script stores for a job it removed before any worker ran it:
# there are no attempts, and no worker clock to say when.
CANCELLED_WAITING = orjson.dumps({"state": "cancelled"})


def _doc(state: str, **fields: Any) -> bytes:
    return orjson.dumps({"state": state, "finished": int(time.time() * 1000), **fields})


def succeeded(result: Any, *, attempts: int, enqueued: int) -> bytes:
    """The document of a job whose handler returned ``result`` (already unstructured:
    orjson must be able to encode it, else this raises). A ``None`` result is left
    out (absent reads as ``null``): most jobs return nothing, and every job's document
    is kept for ``result_ttl``."""
    if result is None:
        return _doc("succeeded", attempts=attempts, enqueued=enqueued)
    return _doc("succeeded", result=result, attempts=attempts, enqueued=enqueued)


def failed(error_type: str, error: str, *, attempts: int, enqueued: int) -> bytes:
    """The document of a job that was dead-lettered."""
    return _doc("failed", error_type=error_type, error=error, attempts=attempts, enqueued=enqueued)


def cancelled(*, attempts: int, enqueued: int) -> bytes:
    """The document of a running job that a client cancelled."""
    return _doc("cancelled", attempts=attempts, enqueued=enqueued)


def _ms(value: Any) -> int:
    try:
        return max(0, int(float(value)))
    except (TypeError, ValueError):
        return 0


@attrs.frozen
class Outcome:
    """An outcome document as read back; 0 stands for an absent time."""

    state: str
    result: Any = None
    error_type: str = ""
    error: str = ""
    attempts: int = 0
    enqueued_ms: int = 0
    finished_ms: int = 0

    @classmethod
    def from_json(cls, raw: bytes | str) -> Outcome:
        """Parse a stored document (``state`` ``"unknown"`` if it has none)."""
        doc = orjson.loads(raw)
        return cls(
            state=str(doc.get("state", "unknown")),
            result=doc.get("result"),
            error_type=str(doc.get("error_type", "")),
            error=str(doc.get("error", "")),
            attempts=int(doc.get("attempts", 0)),
            enqueued_ms=_ms(doc.get("enqueued")),
            finished_ms=_ms(doc.get("finished")),
        )

    @property
    def error_text(self) -> str | None:
        """``"ErrorType: message"`` of a failure, else None."""
        return f"{self.error_type}: {self.error}" if self.error_type else None
