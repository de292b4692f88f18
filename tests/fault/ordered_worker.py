"""A worker process for the ordered-queue fault tests.

Run as ``python tests/fault/ordered_worker.py --url ... --prefix ... --history PATH
[--partitions N] [--ordered]``. It runs a ``Supervisor`` with fast heartbeats on the
queue ``work``, records every run of a job to its history file and prints
``started <member id>`` once the supervisor runs.

Jobs are ``Step`` messages: the ``seq``-th job sent for ``key``. Each run records

- ``start`` (``ts``, ``run``, ``job``, ``key``, ``seq``, ``member``, ``pid``,
  ``partition``, ``epoch``, ``deliveries``, ``attempt``, ``entry``);
- then one of ``end`` (``outcome`` ok or error) or ``cancelled``; a run cut off by
  SIGKILL records neither.

and, from the worker's log, each change of a partition's lease: ``lease`` (``ts``,
``member``, ``partition``, ``what``: acquired with its ``epoch``, released, or lost).

``ts`` is ``time.time()``: all processes run on one machine, so runs of different
processes can be ordered. The handler returns ``{"member", "epoch", "run"}``, which the
acknowledgement script stores as the job's result only if it was applied: the broker
itself tells which run's acknowledgement counted.

The module level ``app`` also serves the command line (``trioqueue status``,
``trioqueue partitions``) and the tests' producer.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import trioqueue
from trioqueue._config_load import parse_config

QUEUE = "work"


@attrs.frozen
class Step:
    key: str
    seq: int
    # Run time of the first delivery in ms (< 0: random within the worker's range) and
    # of later deliveries (< 0: like the first).
    ms: float = -1.0
    again_ms: float = -1.0
    # Fail the first attempt: exercises retries in place.
    flaky: bool = False


class _History:
    """Appends this process's events to its own JSONL file, one write per line."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, ev: str, **fields: Any) -> None:
        os.write(self._fd, orjson.dumps({"ev": ev, "pid": os.getpid(), **fields}) + b"\n")


@attrs.define
class _State:
    history: _History
    min_ms: float
    max_ms: float
    runs: itertools.count[int] = attrs.Factory(lambda: itertools.count(1))


_state: _State | None = None

app = trioqueue.App("ordered-fault")


@app.handler(queue=QUEUE)
async def step(msg: Step) -> dict[str, Any]:
    state = _state
    assert state is not None, "only worker processes run jobs"
    job = trioqueue.current_job()
    run = f"{os.getpid()}-{next(state.runs)}"
    fields = {
        "run": run,
        "job": job.job_id,
        "key": msg.key,
        "seq": msg.seq,
        "member": job.worker,
        "partition": job.partition,
        "epoch": job.epoch,
        "deliveries": job.deliveries,
        "attempt": job.attempt,
        "entry": job.entry_id,
    }
    # A pause can fall between any two instructions. Each event is stamped first and
    # recorded after a checkpoint: had the partition's lease deadline passed by then
    # (the cancel scope trioqueue keeps around the partition), the checkpoint cancels
    # the run and nothing is recorded. So every recorded start and end lies inside
    # the lease of the run's owner, however long the process was stopped.
    stamp = time.time()
    await trio.lowlevel.checkpoint()
    state.history.record("start", ts=stamp, **fields)
    ms = msg.ms if job.deliveries == 1 or msg.again_ms < 0 else msg.again_ms
    if ms < 0:
        ms = random.uniform(state.min_ms, state.max_ms)
    try:
        await trio.sleep(ms / 1000)
        if msg.flaky and job.attempt == 1:
            raise RuntimeError(f"{msg.key}/{msg.seq} fails its first attempt")
        stamp = time.time()
        await trio.lowlevel.checkpoint()
    except trio.Cancelled:
        state.history.record("cancelled", ts=time.time(), **fields)
        raise
    except Exception:
        state.history.record("end", ts=time.time(), outcome="error", **fields)
        raise
    state.history.record("end", ts=stamp, outcome="ok", **fields)
    return {"member": job.worker, "epoch": job.epoch, "run": run}


# The format strings of trioqueue's log lines about leases (trioqueue/_worker/_rebalance.py).
LEASE_LOG = {
    "queue %s partition %d: acquired (epoch %d)": "acquired",
    "queue %s partition %d: released": "released",
    "queue %s partition %d: lease lost or expired; its jobs were cancelled": "lost",
}


class _LeaseLog(logging.Handler):
    """Records the supervisor's log lines about partition leases as history events."""

    def __init__(self, history: _History, member: str) -> None:
        super().__init__()
        self.history = history
        self.member = member

    def emit(self, record: logging.LogRecord) -> None:
        what = LEASE_LOG.get(str(record.msg))
        if what is None or not isinstance(record.args, tuple):
            return
        epoch = record.args[2] if what == "acquired" else None
        self.history.record(
            "lease",
            ts=record.created,
            member=self.member,
            partition=record.args[1],
            what=what,
            epoch=epoch,
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--ordered", action="store_true")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--min-ms", type=float, default=5)
    p.add_argument("--max-ms", type=float, default=25)
    p.add_argument("--heartbeat-interval", type=float, default=0.25)
    p.add_argument("--heartbeat-ttl", type=float, default=1.25)
    p.add_argument("--block", type=float, default=0.2)
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--shutdown-grace", type=float, default=5.0)
    return p.parse_args(argv)


def config_data(a: argparse.Namespace) -> dict[str, Any]:
    return {
        "app": "tests.fault.ordered_worker:app",
        "broker": {"url": a.url, "prefix": a.prefix, "connect_timeout": 2.0, "socket_timeout": 5.0},
        "worker": {
            "concurrency": a.concurrency,
            "heartbeat_interval": a.heartbeat_interval,
            "heartbeat_ttl": a.heartbeat_ttl,
            "block": a.block,
            "shutdown_grace": a.shutdown_grace,
        },
        "queues": {
            QUEUE: {
                "partitions": a.partitions,
                "ordered": a.ordered,
                "retries": a.retries,
                "backoff": {"initial": 0.05, "factor": 2.0, "max": 0.5, "jitter": 0.1},
            }
        },
    }


async def main(a: argparse.Namespace) -> None:
    global _state
    history = _History(a.history)
    _state = _State(history, a.min_ms, a.max_ms)
    sup = trioqueue.Supervisor(app, parse_config(config_data(a)), handle_signals=True)
    logging.getLogger("trioqueue").addHandler(_LeaseLog(history, sup.member_id))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        history.record("member", ts=time.time(), member=sup.member_id)
        print(f"started {sup.member_id}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    trio.run(main, parse_args())
