"""The ordered-queue history checker finds each kind of violation in hand-made runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.fault.ordered_check import Fault, LeaseEvent, Run, check

_n = 0


def run(
    key: str,
    seq: int,
    start: float,
    end: float | None,
    *,
    member: str = "m1",
    epoch: int = 1,
    partition: int = 0,
    outcome: str | None = "ok",
    cancelled: float | None = None,
) -> Run:
    global _n
    _n += 1
    return Run(
        run=f"r{_n}",
        job=f"{key}-{seq}",
        key=key,
        seq=seq,
        member=member,
        pid=1,
        partition=partition,
        epoch=epoch,
        deliveries=1,
        attempt=1,
        start=start,
        end=end,
        outcome=outcome if end is not None else None,
        cancelled=cancelled,
    )


def results(runs: list[Run]) -> dict[str, Any]:
    """What the broker stores when the last ok run of each job was acknowledged."""
    out: dict[str, Any] = {}
    for r in sorted(runs, key=lambda r: r.start):
        if r.outcome == "ok":
            out[r.job] = {"member": r.member, "epoch": r.epoch, "run": r.run}
    return out


def problems(runs: list[Run], sent: dict[str, int], faults: Sequence[Fault] = ()) -> list[str]:
    return check(runs, sent, faults, results=results(runs), lease_ttl=1.0).problems


def test_clean_history() -> None:
    runs = [run("a", 0, 1.0, 1.1), run("b", 0, 1.05, 1.2), run("a", 1, 1.15, 1.3)]
    assert problems(runs, {"a": 2, "b": 1}) == []


def test_lost_seq() -> None:
    (p,) = problems([run("a", 0, 1.0, 1.1)], {"a": 2})
    assert p.startswith("lost: a seqs [1]")


def test_seq_started_before_previous_completed() -> None:
    runs = [run("a", 0, 1.0, 1.2), run("a", 1, 1.1, 1.3)]
    found = problems(runs, {"a": 2})
    assert any(p.startswith("order: a/1") for p in found)
    assert any(p.startswith("overlap: a/1") for p in found)


def test_earlier_seq_run_again_after_a_later_one() -> None:
    runs = [run("a", 0, 1.0, 1.1), run("a", 1, 1.2, 1.3), run("a", 0, 1.4, 1.5, member="m2")]
    found = problems(runs, {"a": 2})
    assert any("a/0" in p and "after seq 1" in p for p in found)
    assert any(p.startswith("duplicate: a/0") for p in found)


def test_run_without_end_of_a_member_never_killed() -> None:
    runs = [run("a", 0, 1.0, None), run("a", 0, 2.0, 2.1, member="m2", epoch=2)]
    assert any("never ended" in p for p in problems(runs, {"a": 1}))


def test_killed_run_is_cut_off_at_the_kill() -> None:
    kill = [Fault("sigkill", "m1", 1.5)]
    late = [run("a", 0, 1.0, None), run("a", 0, 2.0, 2.1, member="m2", epoch=2)]
    assert problems(late, {"a": 1}, kill) == []
    early = [run("a", 0, 1.0, None), run("a", 0, 1.2, 1.3, member="m2", epoch=2)]
    assert any(p.startswith("overlap") for p in problems(early, {"a": 1}, kill))


def test_duplicate_only_after_a_fault_of_the_first_runner() -> None:
    runs = [run("a", 0, 1.0, 1.1), run("a", 0, 2.0, 2.1, member="m2", epoch=2)]
    assert any(p.startswith("duplicate") for p in problems(runs, {"a": 1}))
    assert problems(runs, {"a": 1}, [Fault("sigkill", "m1", 1.5)]) == []
    # A fault of another member does not explain it.
    assert problems(runs, {"a": 1}, [Fault("sigkill", "m3", 1.5)]) != []


def test_paused_member_may_not_finish_after_resuming() -> None:
    stop = [Fault("sigstop", "m1", 1.2, 3.0)]
    cancelled = [
        run("a", 0, 1.0, None, cancelled=3.01),
        run("a", 0, 2.5, 2.6, member="m2", epoch=2),
    ]
    assert problems(cancelled, {"a": 1}, stop) == []
    zombie = [run("a", 0, 1.0, 3.1), run("a", 0, 2.5, 2.6, member="m2", epoch=2)]
    found = problems(zombie, {"a": 1}, stop)
    assert any(p.startswith("zombie") for p in found)
    assert any(p.startswith("overlap") for p in found)


def test_stale_epoch_and_shared_epoch() -> None:
    stale = [run("a", 0, 1.0, 1.1, epoch=2), run("b", 0, 1.2, 1.3, epoch=1, member="m2")]
    assert any(
        "of epoch 1 started after a run of epoch 2" in p for p in problems(stale, {"a": 1, "b": 1})
    )
    shared = [run("a", 0, 1.0, 1.1), run("b", 0, 1.2, 1.3, member="m2")]
    assert any("epoch 1 held by m1 and m2" in p for p in problems(shared, {"a": 1, "b": 1}))


def test_acknowledgement_of_an_older_run_applied() -> None:
    first = run("a", 0, 1.0, 1.1)
    second = run("a", 0, 2.0, 2.1, member="m2", epoch=2)
    stored = {first.job: {"run": first.run, "epoch": 1}}
    report = check([first, second], {"a": 1}, [Fault("sigstop", "m1", 1.5, 3.0)], results=stored)
    assert any("stored result is of run" in p for p in report.problems)
    missing = check([first], {"a": 1}, [], results={})
    assert any("no result stored" in p for p in missing.problems)


def test_lost_lease_fences_cancelled_runs_and_explains_duplicates() -> None:
    # m1 starved past its lease (no fault by the test): m2 took the partition over
    # and re-ran a job m1 had finished but not acknowledged, and m1's cancellation of
    # another run was noticed only after m2 began it again.
    runs = [
        run("a", 0, 1.0, 1.1),
        run("b", 0, 1.05, None, cancelled=3.0),
        run("a", 0, 2.0, 2.1, member="m2", epoch=2),
        run("b", 0, 2.05, 2.2, member="m2", epoch=2),
    ]
    leases = [
        LeaseEvent(0.5, "m1", 0, "acquired", 1),
        LeaseEvent(1.9, "m2", 0, "acquired", 2),
        LeaseEvent(3.0, "m1", 0, "lost"),
    ]
    report = check(runs, {"a": 1, "b": 1}, [], leases=leases, results=results(runs))
    assert report.problems == []
    assert (report.duplicates, report.fenced_runs, report.tenures_lost) == (1, 1, 1)
    released = [*leases[:2], LeaseEvent(1.5, "m1", 0, "released")]
    found = check(runs, {"a": 1, "b": 1}, [], leases=released, results=results(runs)).problems
    assert any(p.startswith("duplicate: a/0") for p in found)
    assert any(p.startswith("overlap: b/0") for p in found)


def test_run_of_an_old_epoch_ending_after_a_new_epoch_began() -> None:
    runs = [run("a", 0, 1.0, 2.5), run("b", 0, 2.0, 2.1, member="m2", epoch=2)]
    found = problems(runs, {"a": 1, "b": 1})
    assert any("ended at 2.500, after a later epoch began" in p for p in found)


def test_moved_keys_are_counted_not_failed() -> None:
    runs = [
        run("a", 0, 1.0, 1.3, partition=0),
        run("a", 1, 1.1, 1.2, partition=1, member="m2"),
        run("a", 2, 1.4, 1.5, partition=1, member="m2"),
    ]
    report = check(runs, {"a": 3}, [], results=results(runs), across_partitions=False)
    assert report.problems == []
    assert (report.moved_keys, report.moved_out_of_order, report.moved_overlaps) == (1, 1, 1)
    assert check(runs, {"a": 3}, [], results=results(runs)).problems != []
