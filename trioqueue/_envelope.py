"""The envelope: how a job looks inside a stream entry and in the delayed set.

This module owns both directions of that format for Python: the worker reads entries
with ``Envelope.from_entry``, the clients' ``status`` reads entries and delayed-set
documents with ``from_entry`` and ``from_delayed``, and the retry path writes the
delayed-set document with ``delayed_payload``. The scripts that write entries (send,
promote, reclaim, dead-letter, dead-letter re-send) follow the same fields. The
specification is docs/reference/wire-format.md ("Stream entries").

Wire decisions, a promise to programs in other languages:

- every field is a string; ``type`` (registered message type name) and ``body`` (the
  message as JSON) are required, everything else is optional, so any Redis client can
  send with a plain ``XADD``;
- ``id`` is the job id; absent, the entry id stands for it;
- ``attempt`` is 1-based; absent means 1;
- ``enqueued`` is milliseconds since the epoch by the server's clock; absent, the time
  part of the entry id;
- ``key`` (the partition key) and ``unique`` (``"1"``: the sender chose the job id) are
  carried through retries; ``error`` holds the last failure on a retried entry;
- ``traceparent`` and ``tracestate`` are the W3C trace context of the send (present
  only when the sender traced it, see ``_tracing``), carried through retries, delays and
  dead letters;
- unknown fields are ignored (dead letters add their own, see ``_deadletters``);
- the delayed-set member is a JSON object with the same names, ``attempt`` and
  ``enqueued`` as numbers and ``body`` as a JSON *string*; its score is the due time.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

F_ID = "id"
F_TYPE = "type"
F_BODY = "body"
F_ATTEMPT = "attempt"
F_ENQUEUED = "enqueued"
F_KEY = "key"
F_UNIQUE = "unique"
F_ERROR = "error"
F_TRACEPARENT = "traceparent"
F_TRACESTATE = "tracestate"
# A retried entry keeps at most this much of its last failure's text.
ERROR_CHARS = 1000


def new_job_id() -> str:
    """A random job id: 96 bits, URL-safe, 16 characters, never starting with ``-``
    (so it cannot be mistaken for an option on a command line)."""
    while True:
        job_id = secrets.token_urlsafe(12)
        if not job_id.startswith("-"):
            return job_id


def new_job_ids(n: int) -> list[str]:
    """``n`` ids as ``new_job_id`` makes them, from one read of the system's random
    source (a ``send_many`` of thousands pays one system call, not one per job)."""
    # 12 random bytes are 16 base64 characters, without padding: one id each.
    raw = base64.urlsafe_b64encode(secrets.token_bytes(12 * n)).decode("ascii")
    ids = [raw[i : i + 16] for i in range(0, 16 * n, 16)]
    return [new_job_id() if job_id.startswith("-") else job_id for job_id in ids]


class EnvelopeError(ValueError):
    """A stream entry is not a valid trioqueue envelope."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@attrs.frozen
class Envelope:
    """A job as read from a stream entry (or a delayed-set document)."""

    entry_id: str
    job_id: str
    type_name: str
    body: bytes
    attempt: int
    enqueued_ms: int
    key: str = ""
    unique: bool = False
    error: str = ""
    """The last failure (``"ErrorType: message"``) of an entry re-queued for a retry."""
    traceparent: str = ""
    """The W3C trace context of the send that enqueued the job (``""``: none)."""
    tracestate: str = ""

    @property
    def trace(self) -> tuple[str, str]:
        """(traceparent, tracestate), as ``_tracing`` takes them."""
        return self.traceparent, self.tracestate

    @classmethod
    def from_entry(
        cls, entry_id: str, fields: Mapping[Any, Any], *, strict: bool = True
    ) -> Envelope:
        """Parse an entry's fields; raise ``EnvelopeError`` naming what is wrong.

        ``strict=False`` reads an entry without ``type`` or ``body`` too (as empty), for
        reporting on it: a worker dead-letters such an entry instead.
        """
        get = fields.get
        type_name = get(b"type")
        if type_name is None and any(isinstance(k, str) for k in fields):
            # Text keys (a client decoding responses): normalise once, then the fast path.
            fields = {k.encode() if isinstance(k, str) else k: v for k, v in fields.items()}
            get = fields.get
            type_name = get(b"type")
        body = get(b"body")
        if type_name is None or body is None:
            if strict:
                present = sorted(_text(k) for k in fields)
                raise EnvelopeError(f"entry lacks 'type' or 'body' field (fields: {present})")
            type_name, body = type_name or b"", body or b""
        job_id = get(b"id")
        if len(fields) == 3 and job_id is not None and b"body" in fields and b"type" in fields:
            # The common entry, a first attempt as sent (id, type, body): the other
            # fields take their defaults without looking for each.
            body = body if isinstance(body, bytes) else str(body).encode()
            return cls(
                entry_id, _text(job_id), _text(type_name), body, 1, int(entry_id.split("-")[0])
            )
        attempt = get(b"attempt")
        enqueued = get(b"enqueued")
        key = get(b"key")
        unique = get(b"unique")
        error = get(b"error")
        traceparent = get(b"traceparent")
        tracestate = get(b"tracestate")
        try:
            attempt_n = int(attempt) if attempt is not None else 1
            enqueued_ms = int(enqueued) if enqueued is not None else int(entry_id.split("-")[0])
        except ValueError as exc:
            raise EnvelopeError(f"bad 'attempt' or 'enqueued' field: {exc}") from None
        return cls(
            entry_id=entry_id,
            job_id=_text(job_id) if job_id is not None else entry_id,
            type_name=_text(type_name),
            body=body if isinstance(body, bytes) else str(body).encode(),
            attempt=attempt_n,
            enqueued_ms=enqueued_ms,
            key=_text(key) if key is not None else "",
            unique=unique is not None and _text(unique) == "1",
            error=_text(error) if error is not None else "",
            traceparent=_text(traceparent) if traceparent is not None else "",
            tracestate=_text(tracestate) if tracestate is not None else "",
        )

    @classmethod
    def from_delayed(cls, payload: bytes | str) -> Envelope:
        """Parse a delayed-set member (it has no entry id yet: ``entry_id`` is empty)."""
        doc = orjson.loads(payload)
        body = doc.get(F_BODY, "")
        return cls(
            entry_id="",
            job_id=str(doc.get(F_ID, "")),
            type_name=str(doc.get(F_TYPE, "")),
            body=body.encode() if isinstance(body, str) else orjson.dumps(body),
            attempt=int(doc.get(F_ATTEMPT, 1)),
            enqueued_ms=int(doc.get(F_ENQUEUED, 0) or 0),
            key=str(doc.get(F_KEY, "")),
            unique=str(doc.get(F_UNIQUE, "")) == "1",
            error=str(doc.get(F_ERROR, "")),
            traceparent=str(doc.get(F_TRACEPARENT, "")),
            tracestate=str(doc.get(F_TRACESTATE, "")),
        )

    def delayed_payload(self, attempt: int, last_error: str = "") -> bytes:
        """The JSON document the retry script stores in the delayed set."""
        doc: dict[str, object] = {
            F_ID: self.job_id,
            F_TYPE: self.type_name,
            F_BODY: self.body.decode("utf-8", "replace"),
            F_ATTEMPT: attempt,
            F_ENQUEUED: self.enqueued_ms,
        }
        if self.key:
            doc[F_KEY] = self.key
        if self.unique:
            doc[F_UNIQUE] = "1"
        if last_error:
            doc[F_ERROR] = last_error[:ERROR_CHARS]
        if self.traceparent:
            doc[F_TRACEPARENT] = self.traceparent
            if self.tracestate:
                doc[F_TRACESTATE] = self.tracestate
        return orjson.dumps(doc)


def entry_fields_text(fields: Mapping[Any, Any]) -> dict[str, str]:
    """Decode an entry's fields for display (CLI, dead-letter listings)."""
    return {_text(k): _text(v) for k, v in fields.items()}
