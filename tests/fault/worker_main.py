"""A worker process for the fault tests.

Run as ``python tests/fault/worker_main.py --url ... --prefix ... --history PATH``.
It runs a ``Supervisor`` with fast heartbeats, records every handler start and end
and every settlement script's outcome to its history file, and prints
``started <member id>`` once the supervisor runs.

Jobs are ``Work`` messages; their ``kind`` steers the handler:

- ``ok``: sleeps a little and returns its number (stored as the result, so the broker
  itself keeps a trace of every applied acknowledgement);
- ``flaky``: fails its first attempt, then behaves like ``ok``;
- ``fail``: fails every attempt (ends in the dead-letter stream);
- ``long``: like ``ok`` but runs ``--long-ms`` (longer than the heartbeat TTL);
- ``poison``: SIGKILLs its own worker process every time it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import attrs
import trio

# Run as a script, only this file's directory is on the path; the history module is
# imported as part of the tests package, like the tests themselves do.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import trioqueue
from tests.fault.history import Recorder
from trioqueue._config_load import parse_config
from trioqueue._scripts._settle import ACK, DEAD, RECLAIM, RETRY

QUEUE = "work"


@attrs.frozen
class Work:
    n: int
    kind: str = "ok"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def make_app(
    rec: Recorder, jobs: dict[str, str], min_ms: float, max_ms: float, long_ms: float = 4000
) -> trioqueue.App:
    app = trioqueue.App("fault")

    @app.handler(queue=QUEUE)
    async def work(msg: Work) -> int:
        job = trioqueue.current_job()
        fields = {
            "job": job.job_id,
            "member": job.worker,
            "entry": job.entry_id,
            "attempt": job.attempt,
            "deliveries": job.deliveries,
        }
        jobs[job.entry_id] = job.job_id
        rec.record("start", **fields)
        if msg.kind == "poison":
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            ms = long_ms if msg.kind == "long" else random.uniform(min_ms, max_ms)
            await trio.sleep(ms / 1000)
            if msg.kind == "fail" or (msg.kind == "flaky" and job.attempt == 1):
                raise RuntimeError(f"{msg.kind} job {msg.n} fails attempt {job.attempt}")
        except trio.Cancelled:
            rec.record("finish", outcome="cancelled", **fields)
            raise
        except Exception:
            rec.record("finish", outcome="error", **fields)
            raise
        rec.record("finish", outcome="ok", **fields)
        return msg.n

    return app


class _Settlements:
    """Records what each settlement script applied, from its arguments and reply."""

    def __init__(self, rec: Recorder, member: str, jobs: dict[str, str]) -> None:
        self._rec = rec
        self._member = member
        self._jobs = jobs
        self._last_failed_ack: list[Any] | None = None

    def _job(self, entry: Any) -> str:
        entry = _text(entry)
        return self._jobs.get(entry, entry)

    def _one(self, ev: str, entry: Any, job: str | None = None) -> None:
        entry = _text(entry)
        self._rec.record(ev, job=job or self._job(entry), entry=entry, member=self._member)

    def ack(self, args: Any, res: Any, failed: bool) -> None:
        # ARGV: group, consumer, result ttl, n, then n x (entry, unique key index, result
        # key index, document); the job of each entry was recorded when it started.
        # The reply is {fenced, gone}: entries gone from the pending list were settled
        # by someone else, unless this call repeats one whose reply was lost (then the
        # earlier call, recorded as ack.info, applied them).
        n = int(args[3])
        retry = self._last_failed_ack == list(args)
        self._last_failed_ack = list(args) if failed else None
        refused: set[str] = set()
        if not failed:
            fenced, gone = res
            refused = {_text(x) for x in fenced}
            if not retry:
                refused |= {_text(x) for x in gone}
        for i in range(n):
            entry = _text(args[4 + i * 4])
            ev = "ack.info" if failed else "ack.fenced" if entry in refused else "ack.ok"
            self._one(ev, entry)

    def retry(self, args: Any, res: Any, failed: bool) -> None:
        self._one("retry.info" if failed else "retry.ok" if res else "retry.fenced", args[2])

    def dead(self, args: Any, res: Any, failed: bool) -> None:
        # ARGV: group, consumer, entry, result ttl, document, then the entry's fields
        flat = [_text(a) for a in args[5:]]
        job = dict(zip(flat[::2], flat[1::2], strict=False)).get("id")
        self._one("dlq.info" if failed else "dlq.ok" if res else "dlq.fenced", args[2], job)

    def reclaim(self, args: Any, res: Any, failed: bool) -> None:
        # Reply: {claimed, over (left to reclaim_dead.lua), lost, suspects left}
        if failed:
            return
        jobs = []
        for entry_id, flat, *_ in res[0]:
            fields = {_text(k): _text(v) for k, v in zip(flat[::2], flat[1::2], strict=False)}
            job = fields.get("id", _text(entry_id))
            self._jobs[_text(entry_id)] = job
            jobs.append(job)
        if jobs or res[1]:
            self._rec.record("reclaim", member=self._member, jobs=jobs, dead=len(res[1]))

    def by_sha(self) -> dict[str, Any]:
        """The recorder of each settlement script, by the SHA it is run by."""
        return {
            ACK.sha: self.ack,
            RETRY.sha: self.retry,
            DEAD.sha: self.dead,
            RECLAIM.sha: self.reclaim,
        }


async def _recorded(record: Any, args: Any, run: Any) -> Any:
    try:
        res = await run
    except BaseException:
        record(args, None, True)
        raise
    record(args, res, False)
    return res


class _RecordingRedis:
    """The supervisor's client, recording scripts run by SHA instead of by calling them."""

    def __init__(self, inner: Any, by_sha: dict[str, Any]) -> None:
        self._inner = inner
        self._by_sha = by_sha

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def evalsha(self, sha: Any, keys: Any = None, args: Any = None, **kwargs: Any) -> Any:
        run = self._inner.evalsha(sha, keys=keys, args=args, **kwargs)
        record = self._by_sha.get(sha)
        return run if record is None else _recorded(record, args, run)


def recording_supervisor(rec: Recorder, jobs: dict[str, str]) -> type[trioqueue.Supervisor]:
    class RecordingSupervisor(trioqueue.Supervisor):
        # The supervisor assigns its client once it connected; wrapping it at that
        # moment records every settlement, including the very first.
        @property
        def redis(self) -> Any:
            return self._recording_redis

        @redis.setter
        def redis(self, value: Any) -> None:
            by_sha = _Settlements(rec, self.member_id, jobs).by_sha()
            self._recording_redis = _RecordingRedis(value, by_sha)

    return RecordingSupervisor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--history", required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--min-ms", type=float, default=5)
    p.add_argument("--max-ms", type=float, default=20)
    p.add_argument("--long-ms", type=float, default=4000)
    # TTL six intervals: a loaded 2-core host must not make a live worker look dead.
    p.add_argument("--heartbeat-interval", type=float, default=0.25)
    p.add_argument("--heartbeat-ttl", type=float, default=1.5)
    p.add_argument("--block", type=float, default=0.2)
    p.add_argument("--visibility-timeout", type=float, default=3.0)
    p.add_argument("--max-deliveries", type=int, default=5)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--socket-timeout", type=float, default=5.0)
    p.add_argument("--shutdown-grace", type=float, default=5.0)
    return p.parse_args(argv)


def make_config(a: argparse.Namespace) -> trioqueue.Config:
    return parse_config(
        {
            "app": "worker_main:app",
            "broker": {
                "url": a.url,
                "prefix": a.prefix,
                "connect_timeout": 2.0,
                "socket_timeout": a.socket_timeout,
            },
            "worker": {
                "concurrency": a.concurrency,
                "heartbeat_interval": a.heartbeat_interval,
                "heartbeat_ttl": a.heartbeat_ttl,
                "block": a.block,
                "shutdown_grace": a.shutdown_grace,
            },
            "queues": {
                QUEUE: {
                    "visibility_timeout": a.visibility_timeout,
                    "max_deliveries": a.max_deliveries,
                    "retries": a.retries,
                    "backoff": {"initial": 0.05, "factor": 2.0, "max": 0.5, "jitter": 0.1},
                }
            },
        }
    )


async def main(a: argparse.Namespace) -> None:
    rec = Recorder(a.history, f"worker-{os.getpid()}")
    # Entry id -> job id of jobs seen here, so settlements can be recorded by job id.
    jobs: dict[str, str] = {}
    app = make_app(rec, jobs, a.min_ms, a.max_ms, a.long_ms)
    sup = recording_supervisor(rec, jobs)(app, make_config(a), handle_signals=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        rec.record("member", member=sup.member_id, pid=os.getpid())
        print(f"started {sup.member_id}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    trio.run(main, parse_args())
