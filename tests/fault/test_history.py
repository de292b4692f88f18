"""The history checker finds each kind of violation in hand-made histories."""

from __future__ import annotations

from typing import Any

from tests.fault.history import FinalState, check

S = 1_000_000_000


def ev(t: float, ev: str, **fields: Any) -> dict[str, Any]:
    return {"t": int(t * S), "p": "test", "ev": ev, **fields}


def sent(job: str, t: float = 0.0) -> list[dict[str, Any]]:
    return [ev(t, "send.invoke", job=job), ev(t + 0.001, "send.ok", job=job)]


def ran(job: str, member: str, t: float, entry: str = "1-0", outcome: str = "ok") -> list[Any]:
    fields = {"job": job, "member": member, "entry": entry, "attempt": 1}
    return [ev(t, "start", **fields), ev(t + 0.01, "finish", outcome=outcome, **fields)]


def final(results: set[str], dead: dict[str, list[str]] | None = None, **left: int) -> FinalState:
    return FinalState(
        left.get("stream", 0), left.get("pending", 0), left.get("delayed", 0), results, dead or {}
    )


def fault(kind: str, target: str, t: float, inflight: list[str]) -> dict[str, Any]:
    return ev(t, "fault", kind=kind, target=target, t0=int(t * S), t1=int(t * S), inflight=inflight)


def test_clean_history_has_no_problems() -> None:
    events = [*sent("a"), *ran("a", "m1", 0.1), *sent("b"), *ran("b", "m1", 0.2, "2-0")]
    report = check(events, final({"a", "b"}))
    assert report.problems() == []
    assert (report.sent_ok, report.acked, report.duplicated) == (2, 2, 0)


def test_lost_acknowledged_send() -> None:
    report = check([*sent("a"), *sent("b"), *ran("a", "m1", 0.1)], final({"a"}))
    assert report.lost == ["b"]
    assert report.problems()


def test_dead_letter_counts_as_settled_and_unexpected_dead_is_reported() -> None:
    report = check(
        [*sent("a"), *sent("b")],
        final({"a"}, {"b": ["MaxDeliveriesExceeded"]}),
        expected_dead={},
    )
    assert report.lost == []
    assert report.wrongly_dead == {"b": ["MaxDeliveriesExceeded"]}


def test_unknown_send_may_be_absent() -> None:
    events = [ev(0, "send.invoke", job="a"), ev(0.1, "send.info", job="a")]
    report = check(events, final(set()))
    assert report.problems() == []
    assert (report.sent_info, report.info_absent) == (1, 1)


def test_unexpected_job() -> None:
    report = check([*sent("a"), *ran("a", "m1", 0.1), *ran("x", "m1", 0.2)], final({"a", "x"}))
    assert report.unexpected == ["x"]


def test_duplicate_needs_a_fault_that_held_the_job() -> None:
    events = [*sent("a"), *ran("a", "m1", 0.1), *ran("a", "m2", 2.0)]
    report = check(events, final({"a"}))
    assert report.unexplained_duplicates == ["a"]
    assert "D=1 > F=0" in report.problems()

    explained = check([*events, fault("sigkill", "m1", 0.15, ["a"])], final({"a"}))
    assert explained.problems() == []
    assert (explained.duplicated, explained.in_flight_at_faults) == (1, 1)


def test_takeover_from_a_live_member() -> None:
    events = [*sent("a"), ev(0.1, "reclaim", member="m2", jobs=["a"]), *ran("a", "m2", 0.2)]
    assert check(events, final({"a"})).stolen == ["a"]
    # A server-wide fault does not excuse it: it hits every member alike.
    server_wide = check([*events, fault("server-kill", "server", 0.05, ["a"])], final({"a"}))
    assert server_wide.stolen == ["a"]
    excused = check([*events, fault("sigstop", "m1", 0.05, ["a"])], final({"a"}))
    assert excused.stolen == []


def test_job_enqueued_twice_and_settled_twice() -> None:
    events = [*sent("a"), *ran("a", "m1", 0.1, "1-0"), *ran("a", "m1", 0.2, "2-0")]
    report = check(events, final({"a"}, {"a": ["RuntimeError"]}))
    assert report.double_enqueued == ["a"]
    assert report.double_settled == ["a"]


def test_unsettled_leftovers() -> None:
    report = check([*sent("a"), *ran("a", "m1", 0.1)], final({"a"}, pending=1, stream=1))
    assert report.unsettled == {"stream": 1, "pending": 1, "delayed": 0}
    assert report.problems()
