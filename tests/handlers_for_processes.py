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
