"""The wire format: how a job looks inside a stream entry.

A stream entry holds the fields ``id`` (job id), ``type`` (registered message type
name) and ``body`` (the message as JSON). Entries re-queued by a retry also carry
``attempt`` (1-based) and ``enqueued`` (milliseconds since the epoch, server
clock). Absent ``attempt`` means 1; absent ``enqueued`` means the time part of the
entry id; absent ``id`` means the entry id. So any Redis client can send with a
plain ``XADD``. See ``docs/reference/wire-format.md``.
"""

from __future__ import annotations

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


def new_job_id() -> str:
    """A random job id: 96 bits, URL-safe, 16 characters, never starting with ``-``
    (so it cannot be mistaken for an option on a command line)."""
    while True:
        job_id = secrets.token_urlsafe(12)
        if not job_id.startswith("-"):
            return job_id


class EnvelopeError(ValueError):
    """A stream entry is not a valid trioqueue envelope."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@attrs.frozen
class Envelope:
    """A job as read from a stream entry."""

    entry_id: str
    job_id: str
    type_name: str
    body: bytes
    attempt: int
    enqueued_ms: int
    key: str = ""
    unique: bool = False

    @classmethod
    def from_entry(cls, entry_id: str, fields: Mapping[Any, Any]) -> Envelope:
        """Parse an entry's fields; raise ``EnvelopeError`` naming what is wrong."""
        get = fields.get
        type_name = get(b"type")
        if type_name is None and any(isinstance(k, str) for k in fields):
            # Text keys (a client decoding responses): normalise once, then the fast path.
            fields = {k.encode() if isinstance(k, str) else k: v for k, v in fields.items()}
            get = fields.get
            type_name = get(b"type")
        body = get(b"body")
        if type_name is None or body is None:
            present = sorted(_text(k) for k in fields)
            raise EnvelopeError(f"entry lacks 'type' or 'body' field (fields: {present})")
        job_id = get(b"id")
        attempt = get(b"attempt")
        enqueued = get(b"enqueued")
        key = get(b"key")
        unique = get(b"unique")
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
            doc["unique"] = "1"
        if last_error:
            doc["error"] = last_error[:1000]
        return orjson.dumps(doc)


def entry_fields_text(fields: Mapping[Any, Any]) -> dict[str, str]:
    """Decode an entry's fields for display (CLI, dead-letter listings)."""
    return {_text(k): _text(v) for k, v in fields.items()}
