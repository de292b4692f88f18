"""Each wire format's module reads back what it writes, and agrees with the spec page.

The formats: the envelope (stream fields and the delayed-set document, ``_envelope``),
dead-letter entries (``_deadletters``) and outcome documents (``_outcome``), specified
in docs/reference/wire-format.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st

from trioqueue import _deadletters, _envelope, _outcome
from trioqueue._envelope import Envelope, EnvelopeError

SPEC = Path(__file__).parent.parent / "docs" / "reference" / "wire-format.md"

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
envelopes = st.builds(
    Envelope,
    entry_id=st.just(""),
    job_id=text.filter(bool),
    type_name=text,
    body=text.map(str.encode),
    attempt=st.integers(1, 50),
    enqueued_ms=st.integers(0, 2**45),
    key=text,
    unique=st.booleans(),
)


@given(envelopes, st.integers(1, 50), text)
def test_delayed_document_reads_back(env: Envelope, attempt: int, error: str) -> None:
    """``delayed_payload`` and ``from_delayed`` agree on every field."""
    back = Envelope.from_delayed(env.delayed_payload(attempt, error))
    assert back == Envelope(
        "",
        env.job_id,
        env.type_name,
        env.body,
        attempt,
        env.enqueued_ms,
        env.key,
        env.unique,
        error[: _envelope.ERROR_CHARS],
    )


def test_entry_defaults_and_strictness() -> None:
    """Absent id, attempt and enqueued take their documented defaults; a lenient read
    accepts an entry a worker would dead-letter."""
    env = Envelope.from_entry("1700000000000-3", {b"type": b"T", b"body": b"{}"})
    assert (env.job_id, env.attempt, env.enqueued_ms) == ("1700000000000-3", 1, 1700000000000)
    fields = {b"id": b"j", b"attempt": b"2", b"error": b"ValueError: x"}
    try:
        Envelope.from_entry("1-0", fields)
    except EnvelopeError as exc:
        assert "lacks 'type' or 'body'" in str(exc)
    else:
        raise AssertionError("strict read accepted an entry without type")
    lenient = Envelope.from_entry("1-0", fields, strict=False)
    assert (lenient.job_id, lenient.attempt, lenient.error) == ("j", 2, "ValueError: x")


@given(envelopes, text, text)
def test_dead_letter_reads_back(env: Envelope, error_type: str, error: str) -> None:
    """A dead letter built from a job reads back as that job, with why it died."""
    fields = _deadletters.job_fields(env, error_type, error, traceback="tb" * 3000)
    raw = _deadletters.stamped(fields, queue="q", worker="w", source_id="1-0")
    letter = _deadletters.DeadLetter.from_entry("2-0", {**raw, "failed_at": "1700000000000"}, 3)
    assert (letter.job_id, letter.type_name, letter.body) == (
        env.job_id,
        env.type_name,
        env.body.decode(),
    )
    assert (letter.error_type, letter.error, letter.attempts) == (error_type, error, env.attempt)
    assert (letter.worker, letter.partition, len(letter.traceback)) == ("w", 3, 4000)
    assert letter.failed_at is not None and letter.fields["source_id"] == "1-0"
    outcome = _outcome.Outcome.from_json(_deadletters.failure_outcome(fields))
    assert (outcome.state, outcome.error_type, outcome.error) == ("failed", error_type, error)
    assert (outcome.attempts, outcome.enqueued_ms) == (env.attempt, env.enqueued_ms)


def test_raw_dead_letter_keeps_what_the_entry_had() -> None:
    fields = _deadletters.raw_fields({b"junk": b"1", b"attempt": b"4"}, "MalformedEnvelope", "x")
    assert fields == {
        "junk": "1",
        "attempt": "4",
        "error_type": "MalformedEnvelope",
        "error": "x",
        "attempts": "4",
    }


def test_outcome_documents_read_back() -> None:
    """Each document the worker writes, and the cancel script's, reads back."""
    ok = _outcome.Outcome.from_json(_outcome.succeeded({"a": [1]}, attempts=2, enqueued=5))
    assert (ok.state, ok.result, ok.attempts, ok.enqueued_ms) == ("succeeded", {"a": [1]}, 2, 5)
    assert ok.finished_ms > 0 and ok.error_text is None
    bad = _outcome.Outcome.from_json(_outcome.failed("E", "msg", attempts=3, enqueued=5))
    assert bad.error_text == "E: msg"
    gone = _outcome.Outcome.from_json(_outcome.cancelled(attempts=1, enqueued=5))
    assert gone.state == "cancelled"
    waiting = _outcome.Outcome.from_json(_outcome.CANCELLED_WAITING)
    assert (waiting.state, waiting.finished_ms, waiting.attempts) == ("cancelled", 0, 0)
    keys = list(orjson.loads(_outcome.succeeded(1, attempts=1, enqueued=1)))
    assert keys == ["state", "finished", "result", "attempts", "enqueued"]


def test_spec_page_names_every_field_and_its_module() -> None:
    """The specification lists each field the modules define, and points to them."""
    spec = SPEC.read_text()
    for module in (_envelope, _deadletters):
        for name, value in vars(module).items():
            if name.startswith("F_"):
                assert re.search(rf"`{value}`", spec), f"{module.__name__}.{name} not in spec"
    for module in ("_envelope.py", "_deadletters.py", "_outcome.py"):
        assert f"trioqueue/{module}" in spec


def test_a_sent_entry_reads_the_same_with_or_without_optional_fields() -> None:
    """The common entry (id, type, body) and one that also carries the optional fields
    at their defaults give the same envelope."""
    plain = {b"id": b"j1", b"type": b"T", b"body": b'{"a":1}'}
    spelled = {**plain, b"attempt": b"1", b"enqueued": b"1700000000000", b"key": b""}
    fast = Envelope.from_entry("1700000000000-0", plain)
    assert fast == Envelope.from_entry("1700000000000-0", spelled)
    assert (fast.job_id, fast.type_name, fast.body, fast.attempt) == ("j1", "T", b'{"a":1}', 1)
    assert fast.enqueued_ms == 1700000000000
    assert Envelope.from_entry("1700000000000-0", {k.decode(): v for k, v in plain.items()}) == fast


def test_job_ids_one_at_a_time_and_in_bulk_look_alike() -> None:
    """16 URL-safe characters, never a leading ``-``, all different, from either maker."""
    import re

    from trioqueue._envelope import new_job_id, new_job_ids

    bulk = new_job_ids(5000)
    ids = [*bulk, *(new_job_id() for _ in range(500))]
    assert len(bulk) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{15}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert new_job_ids(0) == []
