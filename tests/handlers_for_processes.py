"""Module-level handlers for the process-pool tests (a child process must import them)."""

from __future__ import annotations

import os
import time

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
