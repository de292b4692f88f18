"""The client core without a broker: what each operation asks for, round by round.

A fake driver answers the commands an operation yields, so these tests see the
algorithm both clients run (and count its round trips) as plain function calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import trioqueue
from tests.test_bare_job_id import Alpha, Beta, make_app
from trioqueue._core import _lookup, _send
from trioqueue._core._base import Core
from trioqueue._core._commands import (
    BestEffort,
    BLPop,
    Command,
    Delete,
    Get,
    HGet,
    Op,
    Pipeline,
    SetPx,
    Steps,
    capture,
)
from trioqueue._routing import home_first
from trioqueue._scripts import Call, Sent
from trioqueue._scripts._producer import FIND


def make_core() -> Core:
    """Queues "alpha" (one partition) and "beta" (four), as in test_bare_job_id."""
    return Core(make_app(), "tq")


def drive(op: Op[Any], answer: Callable[[Command], Any]) -> tuple[Any, list[Command]]:
    """Run ``op`` to its end, answering each command; return its result and the commands."""
    seen: list[Command] = []
    steps = Steps(op)
    for command in steps:
        seen.append(command)
        steps.outcome = capture(answer, command)
    return steps.result, seen


def nothing_anywhere(command: Command) -> Any:
    if isinstance(command, Pipeline):
        return [None for c in command.commands]  # no outcome, and find finds nothing
    return None


def test_bare_id_lookup_takes_three_round_trips_over_every_partition() -> None:
    """Partition counts, outcome keys, then stream/delayed lookups: one pipeline each."""
    status, seen = drive(_lookup.status(make_core(), "j1", None), nothing_anywhere)
    assert status == trioqueue.JobStatus("j1", "", "unknown")
    assert [type(c) for c in seen] == [Pipeline, Pipeline, Pipeline]
    counts, outcomes, finds = (c.commands for c in seen if isinstance(c, Pipeline))
    assert [c.key for c in counts if isinstance(c, HGet)] == [
        "tq:{alpha:0}:meta",
        "tq:{beta:0}:meta",
    ]
    order = [("alpha", 0), *(("beta", p) for p in home_first("j1", 4))]
    assert [c.key for c in outcomes if isinstance(c, Get)] == [
        f"tq:{{{q}:{p}}}:{what}:j1" for what in ("result", "progress") for q, p in order
    ]
    assert all(isinstance(c, Call) and c.script == FIND for c in finds)
    assert len(finds) == len(order)


def test_lookup_stops_at_an_outcome_and_prefers_the_home_partition() -> None:
    """An outcome found in the first round ends the lookup: no stream scans."""
    home = home_first("j1", 4)[0]
    doc = b'{"state": "succeeded", "result": 5, "attempts": 2}'

    def answer(command: Command) -> Any:
        if isinstance(command, Pipeline) and isinstance(command.commands[0], Get):
            mine = f"{{beta:{home}}}"
            return [doc if isinstance(c, Get) and mine in c.key else None for c in command.commands]
        return nothing_anywhere(command)

    status, seen = drive(_lookup.status(make_core(), "j1", "beta"), answer)
    assert (status.queue, status.state, status.attempts) == ("beta", "succeeded", 2)
    assert len(seen) == 2


def test_a_bare_id_on_a_queue_of_one_partition_needs_no_lookup_to_cancel() -> None:
    """With one place the job can be, cancel goes straight to the cancel script."""
    core = make_core()
    drive(core.partitions("alpha"), nothing_anywhere)  # cached from now on
    outcome, seen = drive(_lookup.cancel(core, "j1", "alpha"), lambda c: "removed")
    assert outcome == "removed"
    assert len(seen) == 1 and isinstance(seen[0], Call)


def test_result_wait_cleans_up_when_interrupted() -> None:
    """An error thrown in while waiting makes the op delete its markers, then re-raise."""
    core = make_core()
    op = _lookup.result(
        core,
        trioqueue.Job("j1", "alpha"),
        None,
        timeout=10,
        clock=lambda: 0.0,
        too_slow=TimeoutError,
    )
    assert isinstance(op.send(None), SetPx)
    assert op.send(None) == Get("tq:{alpha:0}:result:j1")
    assert isinstance(op.send(None), BLPop)
    cleanup = op.throw(KeyboardInterrupt())
    assert cleanup == BestEffort(Delete(("tq:{alpha:0}:wait:j1", "tq:{alpha:0}:done:j1")))
    with pytest.raises(KeyboardInterrupt):
        op.send(None)


def test_result_raises_the_drivers_timeout_error() -> None:
    """The deadline is read from the driver's clock; ``too_slow`` builds the error."""
    now = iter([0.0, 2.0])
    op = _lookup.result(
        make_core(),
        trioqueue.Job("j1", "alpha"),
        None,
        timeout=1.0,
        clock=lambda: next(now),
        too_slow=TimeoutError,
    )
    with pytest.raises(TimeoutError, match=r"no result for job j1 within 1\.0s"):
        drive(op, lambda c: None)


def test_send_many_reads_partition_counts_in_one_round() -> None:
    """Messages for several queues: one pipeline of counts, then one send per chunk."""

    def answer(command: Command) -> Any:
        if isinstance(command, Pipeline):
            return [b"1", b"1"]
        assert isinstance(command, Call)
        n = int(command.args[4])
        return Sent(["1-0"] * n, [False] * n)

    jobs, seen = drive(
        _send.send_many(make_core(), [Alpha(1), Beta(2), Alpha(3)], queue=None, key=None), answer
    )
    assert [j.queue for j in jobs] == ["alpha", "beta", "alpha"]
    assert [type(c) for c in seen] == [Pipeline, Call, Call]
