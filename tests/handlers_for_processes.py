"""Module-level handlers for the process-pool tests (a child process must import them)."""

from __future__ import annotations

import os
import time
from typing import Any

import attrs


@attrs.frozen
class Crunch:
    n: int
    sleep: float = 0.0
    crash: bool = False


def crunch(msg: Crunch) -> int:
    if msg.crash:
        os._exit(3)  # the child dies: the attempt must fail, not the worker
    time.sleep(msg.sleep)
    return os.getpid()


@attrs.frozen
class Steer:
    how: str  # "retry" (until `marker` exists, which the first attempt creates) or "reject"
    marker: str = ""


def steer(msg: Steer) -> str:
    import trioqueue

    if msg.how == "reject":
        raise trioqueue.Reject("rejected in the child")
    if not os.path.exists(msg.marker):
        open(msg.marker, "w").close()
        raise trioqueue.Retry(delay=0.05, reason="again, from the child")
    return "done"


@attrs.frozen
class WhoAmI:
    n: int


def whoami(msg: WhoAmI) -> list[Any]:
    """The job and the current span as the child process sees them."""
    from opentelemetry import trace

    import trioqueue

    job = trioqueue.current_job()
    span = trace.get_current_span().get_span_context()
    return [job.job_id, job.attempt, os.getpid(), f"{span.trace_id:032x}", f"{span.span_id:016x}"]
