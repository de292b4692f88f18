"""Ordered queues, partitions and rebalancing with real worker processes.

Workers (``ordered_worker.py``) record every run of a job; ``ordered_check.py`` checks
the history: nothing lost, jobs of a key one at a time and in send order, duplicates
only after faults, fencing epochs that only grow, late acknowledgements never applied.
Meanwhile the tests poll the lease keys and the members' sorted set and report how
long each change (a worker joining, killed, paused, stopped) took until every
partition had a live owner again and the assignment was balanced.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio
from coredis.tokens import PureToken

import trioqueue
from tests.conftest import Server, make_config, wait_for
from tests.fault.harness import FIGURES
from tests.fault.ordered_check import Fault, Report, Run, check, load_leases, load_runs
from tests.fault.ordered_worker import QUEUE, Step, app
from tests.raw import connected
from trioqueue._connection import connected as trioqueue_connected
from trioqueue._job import Job
from trioqueue._keys import GROUP, PartitionKeys, members_key
from trioqueue._routing import partition_for
from trioqueue._scripts import run, server_time
from trioqueue._scripts._members import ORDERED_FETCH
from trioqueue._status import collect_status

WORKER = Path(__file__).with_name("ordered_worker.py")
REPO = Path(__file__).resolve().parents[2]
TRIOQUEUE = Path(sys.executable).with_name("trioqueue")

INTERVAL = 0.25
TTL = 1.25
# "Within a few heartbeat TTLs": the bound on every rebalance measured here.
REASSIGNED_WITHIN = 4 * TTL


async def status_doc(url: str, prefix: str, *queues: list[str]) -> dict[str, Any]:
    """``status --json``'s document, read through trioqueue's own client."""
    async with trioqueue_connected(url) as redis:
        return await collect_status(redis, prefix, *queues)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- processes


@attrs.define
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    member: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stopped(self) -> bool:
        """Whether the process is in the stopped state (SIGSTOP took effect)."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"


class Fleet:
    """Worker processes by name, and the faults done to them (wall-clock times)."""

    def __init__(self, root: Path, server: Server, prefix: str, **options: Any) -> None:
        self.server = server
        self.prefix = prefix
        self.options = options
        self.history = root / "history"
        self.logs = root / "logs"
        self.history.mkdir(parents=True)
        self.logs.mkdir(parents=True)
        self.procs: dict[str, Proc] = {}
        self.every: list[Proc] = []
        self.faults: list[Fault] = []
        self._faults_log = self.history / "faults.jsonl"

    def _fault(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        with self._faults_log.open("ab") as log:
            log.write(orjson.dumps({"ev": "fault", **attrs.asdict(fault)}) + b"\n")
        return fault

    async def start(self, name: str) -> Proc:
        n = len(self.every)
        out, err = self.logs / f"{name}-{n}.out", self.logs / f"{name}-{n}.err"
        args = [sys.executable, str(WORKER), "--url", self.server.url, "--prefix", self.prefix]
        args += ["--history", str(self.history / f"{name}-{n}.jsonl")]
        args += ["--heartbeat-interval", str(INTERVAL), "--heartbeat-ttl", str(TTL)]
        for key, value in self.options.items():
            if value is True:
                args.append(f"--{key}")
            elif value is not False:
                args += [f"--{key.replace('_', '-')}", str(value)]
        # Popen (not trio's) so the synchronous fixture finalizer can reap it.
        with out.open("wb") as fout, err.open("wb") as ferr:
            proc = subprocess.Popen(  # noqa: ASYNC220
                args, stdout=fout, stderr=ferr, cwd=REPO, start_new_session=True
            )
        p = Proc(name, proc, out, err)
        self.every.append(p)
        self.procs[name] = p
        await wait_for(lambda: "started " in out.read_text() or not p.alive(), timeout=30)
        if not p.alive():
            raise AssertionError(f"worker {name} exited at start:\n{p.stderr()}")
        p.member = out.read_text().split("started ", 1)[1].split()[0]
        return p

    async def start_many(self, *names: str) -> list[Proc]:
        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(self.start, name)
        return [self.procs[name] for name in names]

    def kill(self, name: str) -> Fault:
        p = self.procs.pop(name)
        os.kill(p.proc.pid, signal.SIGKILL)
        p.proc.wait()
        # Taken once it is dead: nothing of it can happen after this.
        return self._fault(Fault("sigkill", p.member, time.time()))

    async def sigstop(self, name: str) -> float:
        p = self.procs[name]
        os.kill(p.proc.pid, signal.SIGSTOP)
        await wait_for(p.stopped, timeout=5, interval=0.001)
        return time.time()

    def sigcont(self, name: str, stopped_at: float) -> Fault:
        p = self.procs[name]
        # Taken before it runs again: anything it does after this may be a zombie's.
        fault = self._fault(Fault("sigstop", p.member, stopped_at, time.time()))
        os.kill(p.proc.pid, signal.SIGCONT)
        return fault

    async def terminate(self, name: str, timeout: float = 15.0) -> int | None:
        p = self.procs.pop(name)
        self._fault(Fault("sigterm", p.member, time.time()))
        os.kill(p.proc.pid, signal.SIGTERM)
        await wait_for(lambda: not p.alive(), timeout=timeout, interval=0.02)
        return p.proc.returncode

    async def stop_all(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every live worker; return the exit code of each."""
        live = [p for p in self.procs.values() if p.alive()]
        for p in live:
            os.kill(p.proc.pid, signal.SIGTERM)
        with trio.move_on_after(timeout):
            while any(p.alive() for p in live):
                await trio.sleep(0.05)
        return {p.name: p.proc.poll() for p in live}

    def cleanup(self) -> None:
        for p in self.every:
            if p.alive():
                os.kill(p.proc.pid, signal.SIGCONT)
                os.kill(p.proc.pid, signal.SIGKILL)
            p.proc.wait()

    def runs(self) -> list[Run]:
        return load_runs(self.history)

    def check(self, sent: dict[str, int], **options: Any) -> Report:
        return check(self.runs(), sent, self.faults, leases=load_leases(self.history), **options)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    """Make a ``Fleet``; every process it started is killed at teardown."""
    made: list[Fleet] = []

    def make(server: Server, prefix: str, **options: Any) -> Fleet:
        f = Fleet(tmp_path / f"fleet{len(made)}", server, prefix, **options)
        made.append(f)
        return f

    yield make
    for f in made:
        f.cleanup()


# ---------------------------------------------------------------------- broker view


class Leases:
    """Polls who owns each partition and who is live, as the workers see it."""

    def __init__(self, redis: Any, prefix: str, partitions: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.partitions = partitions

    async def snapshot(self) -> tuple[dict[int, str | None], set[str]]:
        now_ms = await run(self.redis, server_time()) // 1000
        live = await self.redis.zrange(
            members_key(self.prefix), now_ms, "+inf", sortby=PureToken.BYSCORE
        )
        owners: dict[int, str | None] = {}
        for p in range(self.partitions):
            token = await self.redis.get(PartitionKeys(self.prefix, QUEUE, p).lease)
            owners[p] = _text(token).rsplit(":", 1)[0] if token is not None else None
        return owners, {_text(m) for m in live}

    async def epoch(self, partition: int) -> int:
        token = await self.redis.get(PartitionKeys(self.prefix, QUEUE, partition).lease)
        return int(_text(token).rsplit(":", 1)[1]) if token is not None else 0

    async def assigned(self, members: set[str]) -> bool:
        """Exactly ``members`` are live, each partition is leased by one of them, and
        the counts are balanced (within one)."""
        owners, live = await self.snapshot()
        if live != members or any(o not in members for o in owners.values()):
            return False
        counts = Counter({m: 0 for m in members})
        counts.update(o for o in owners.values() if o is not None)
        return max(counts.values()) - min(counts.values()) <= 1

    async def wait_assigned(self, members: set[str], since: float) -> float:
        """Seconds from ``since`` (trio clock) until ``assigned(members)``."""

        async def done() -> bool:
            return await self.assigned(members)

        try:
            await wait_for(done, timeout=since + REASSIGNED_WITHIN + 5 - trio.current_time())
        except AssertionError:
            owners, live = await self.snapshot()
            raise AssertionError(
                f"not reassigned to {sorted(members)}: live {sorted(live)}, owners {owners}"
            ) from None
        return trio.current_time() - since


async def settled(redis: Any, prefix: str, partitions: int) -> bool:
    """Whether every partition is empty: no entry, nothing pending or delayed."""
    for p in range(partitions):
        keys = PartitionKeys(prefix, QUEUE, p)
        if await redis.xlen(keys.stream) or await redis.zcard(keys.delayed):
            return False
        if await redis.exists([keys.stream]):
            summary: Any = await redis.xpending(keys.stream, GROUP)
            if int(summary.pending):
                return False
    return True


async def stored_results(redis: Any, prefix: str, jobs: list[Job]) -> dict[str, Any]:
    """The result each job's applied acknowledgement stored (``None`` if none)."""
    out: dict[str, Any] = {}
    for start in range(0, len(jobs), 500):
        chunk = jobs[start : start + 500]
        keys = [PartitionKeys(prefix, QUEUE, j.partition).result(j.id) for j in chunk]
        for job, doc in zip(chunk, await redis.mget(keys), strict=True):
            parsed = orjson.loads(doc) if doc is not None else {}
            out[job.id] = parsed["result"] if parsed.get("state") == "succeeded" else None
    return out


class Producer:
    """Sends ``seqs`` rounds, one job per key each, seq by seq, every ``period`` s."""

    def __init__(self, server: Server, prefix: str, keys: list[str], seqs: int) -> None:
        self.server = server
        self.prefix = prefix
        self.keys = keys
        self.seqs = seqs
        self.jobs: list[Job] = []
        self.done = trio.Event()

    def sent(self) -> dict[str, int]:
        return {k: self.seqs for k in self.keys}

    async def run(
        self,
        period: float,
        flaky: Callable[[int, int], bool] = lambda k, s: False,
        *,
        fresh_client: bool = False,
    ) -> None:
        start = trio.current_time()
        try:
            async with app.connect(self.server.url, prefix=self.prefix) as client:
                for seq in range(self.seqs):
                    msgs = [Step(k, seq, flaky=flaky(i, seq)) for i, k in enumerate(self.keys)]
                    if fresh_client:
                        # Clients cache the partition count for a while; a new one
                        # routes by the count stored right now.
                        async with app.connect(self.server.url, prefix=self.prefix) as c:
                            self.jobs += await c.send_many(msgs, key=lambda m: m.key)
                    else:
                        self.jobs += await client.send_many(msgs, key=lambda m: m.key)
                    await trio.sleep_until(start + (seq + 1) * period)
        finally:
            self.done.set()


def ok_runs(f: Fleet) -> int:
    return sum(1 for r in f.runs() if r.outcome == "ok")


async def progress(f: Fleet, runs: int, total: int) -> None:
    """Wait until ``runs`` more runs completed (of ``total`` jobs): faults are spaced
    by work done, so that each one hits jobs in flight."""
    target = min(ok_runs(f) + runs, total)
    await wait_for(lambda: ok_runs(f) >= target, timeout=30, interval=0.05)


def in_flight(f: Fleet, member: str) -> list[Run]:
    return [r for r in f.runs() if r.member == member and r.end is None and r.cancelled is None]


def report_figures(name: str, figures: dict[str, float], report: Report) -> None:
    lines = [f"{what}: {secs:.2f}s" for what, secs in figures.items()]
    text = "\n".join([*lines, report.summary()])
    FIGURES.append((name, text))
    print(f"\n{name}:\n{text}")


def assert_clean_logs(f: Fleet) -> None:
    for p in f.every:
        assert "Traceback" not in p.stderr(), p.stderr()[-4000:]


# ---------------------------------------------------------------------- tests


@pytest.mark.fault
async def test_ordered_keys_survive_join_kill_pause_and_stop(
    server: Server, prefix: str, fleet: Callable[..., Fleet]
) -> None:
    """3 workers, 8 partitions, 60 keys x 50 seqs; a 4th joins, one is SIGKILLed and
    restarted, one is paused past its lease, one stops gracefully."""
    partitions = 8
    f = fleet(server, prefix, partitions=partitions, ordered=True)
    producer = Producer(server, prefix, [f"key{i:02d}" for i in range(60)], 50)
    figures: dict[str, float] = {}
    async with connected(server.url) as redis:
        leases = Leases(redis, prefix, partitions)
        a, b, c = await f.start_many("a", "b", "c")
        since = trio.current_time()
        live = {a.member, b.member, c.member}
        figures["3 workers started -> assigned"] = await leases.wait_assigned(live, since)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer.run, 0.4, lambda k, s: k % 6 == 0 and s % 10 == 3)
            await progress(f, 150, 3000)

            d = await f.start("d")
            since = trio.current_time()
            live.add(d.member)
            figures["join -> reassigned"] = await leases.wait_assigned(live, since)

            await progress(f, 150, 3000)
            await wait_for(lambda: in_flight(f, b.member), timeout=10, interval=0.01)
            since = trio.current_time()
            f.kill("b")
            live.discard(b.member)
            figures["SIGKILL -> reassigned"] = await leases.wait_assigned(live, since)
            b2 = await f.start("b")
            since = trio.current_time()
            live.add(b2.member)
            figures["restart -> reassigned"] = await leases.wait_assigned(live, since)

            await progress(f, 150, 3000)
            await wait_for(lambda: in_flight(f, c.member), timeout=10, interval=0.01)
            since = trio.current_time()
            stopped_at = await f.sigstop("c")
            live.discard(c.member)
            figures["SIGSTOP -> taken over"] = await leases.wait_assigned(live, since)
            # Its heartbeat was up to an interval old when it stopped: stay stopped
            # past a whole TTL since, whatever the takeover took.
            await trio.sleep_until(since + TTL + INTERVAL)
            pause = f.sigcont("c", stopped_at)
            assert pause.t1 - pause.t0 > TTL
            since = trio.current_time()
            live.add(c.member)
            figures["SIGCONT -> rejoined"] = await leases.wait_assigned(live, since)

            await progress(f, 150, 3000)
            since = trio.current_time()
            assert await f.terminate("a") == 0, a.stderr()[-4000:]
            live.discard(a.member)
            figures["SIGTERM -> reassigned"] = await leases.wait_assigned(live, since)

            await producer.done.wait()

            async def drained() -> bool:
                return await settled(redis, prefix, partitions)

            await wait_for(drained, timeout=30, interval=0.1)
        results = await stored_results(redis, prefix, producer.jobs)
    codes = await f.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    report = f.check(producer.sent(), results=results, lease_ttl=TTL)
    report_figures("ordered: join, SIGKILL, SIGSTOP, SIGTERM", figures, report)
    assert report.problems == [], "\n".join(report.problems[:30])
    assert len(producer.jobs) == 3000
    for what, secs in figures.items():
        assert secs <= REASSIGNED_WITHIN, (what, secs)
    # The paused member lost its partitions: what it ran there was cancelled.
    assert "lease lost or expired; its jobs were cancelled" in c.stderr()
    assert_clean_logs(f)


@pytest.mark.fault
async def test_shared_partitions_spread_work_over_members(
    server: Server, prefix: str, fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    """A shared queue of 4 partitions: every worker reads every partition."""
    partitions, n = 4, 900
    f = fleet(server, prefix, partitions=partitions, min_ms=10, max_ms=30)
    procs = await f.start_many("a", "b", "c")
    members = {p.member for p in procs}
    keys = [f"key{i:02d}" for i in range(45)]
    async with connected(server.url) as redis:
        async with app.connect(server.url, prefix=prefix) as client:
            jobs = await client.send_many(
                [Step(keys[i % len(keys)], i // len(keys)) for i in range(n)],
                key=lambda m: m.key,
            )
        assert len(jobs) == n
        assert {j.partition for j in jobs} == set(range(partitions))

        async def drained() -> bool:
            return await settled(redis, prefix, partitions)

        await wait_for(drained, timeout=30, interval=0.05)
        doc = await status_doc(server.url, prefix, [QUEUE])
    assert {m["id"] for m in doc["members"]} == members
    assert all(m["partitions"] == {} for m in doc["members"])
    assert [p["owner"] for p in doc["queues"][QUEUE]["partitions"]] == [None] * partitions

    config = tmp_path / "shared.toml"
    config.write_text(
        f'app = "tests.fault.ordered_worker:app"\n'
        f'[broker]\nurl = "{server.url}"\nprefix = "{prefix}"\n'
        f"[queues.{QUEUE}]\npartitions = {partitions}\n"
    )
    with trio.fail_after(30):
        cli = await trio.run_process(
            [str(TRIOQUEUE), "status", str(config), "--json"],
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert cli.returncode == 0, cli.stderr.decode()
    shown = orjson.loads(cli.stdout)
    assert {m["id"] for m in shown["members"]} == members
    assert shown["queues"][QUEUE]["mode"] == "shared"
    assert len(shown["queues"][QUEUE]["partitions"]) == partitions

    runs = f.runs()
    share = Counter(r.member for r in runs if r.outcome == "ok")
    assert sum(share.values()) == n, share
    assert all(share[m] > n / 10 for m in members), share
    codes = await f.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    print(f"\nshared: jobs per member {sorted(share.values())}")
    assert_clean_logs(f)


@pytest.mark.fault
async def test_paused_owner_is_fenced_by_its_lease(
    server: Server, prefix: str, fleet: Callable[..., Fleet]
) -> None:
    """An owner paused past its lease while running a long job: another member takes
    the partition with a larger epoch and runs the job again; the paused one, once
    resumed, has its run cancelled, its acknowledgement never counts, and it runs
    no later job of the key."""
    f = fleet(server, prefix, partitions=2, ordered=True)
    async with connected(server.url) as redis:
        leases = Leases(redis, prefix, 2)
        since = trio.current_time()
        a = await f.start("a")
        await leases.wait_assigned({a.member}, since)
        since = trio.current_time()
        b = await f.start("b")
        await leases.wait_assigned({a.member, b.member}, since)
        owners, _ = await leases.snapshot()
        mine = next(p for p, owner in owners.items() if owner == a.member)
        key = next(k for k in (f"fence{i}" for i in range(100)) if partition_for(k, 2) == mine)
        epoch_a = await leases.epoch(mine)
        # The first delivery of seq 0 runs far longer than the pause; the re-run is
        # long enough that the paused member resumes while its successor runs it.
        steps = [Step(key, 0, ms=30_000, again_ms=1500)]
        steps += [Step(key, seq, ms=50) for seq in range(1, 5)]
        async with app.connect(server.url, prefix=prefix) as client:
            jobs = [await client.send(s, key=key) for s in steps]

        def started(member: str, seq: int) -> list[Run]:
            return [r for r in f.runs() if r.member == member and r.key == key and r.seq == seq]

        await wait_for(lambda: started(a.member, 0), timeout=10)
        since = trio.current_time()
        stopped_at = await f.sigstop("a")
        await wait_for(lambda: started(b.member, 0), timeout=REASSIGNED_WITHIN)
        takeover = trio.current_time() - since
        epoch_b = await leases.epoch(mine)
        pause = f.sigcont("a", stopped_at)
        since = trio.current_time()
        rejoin = await leases.wait_assigned({a.member, b.member}, since)
        await wait_for(lambda: "lease lost or expired" in a.stderr(), timeout=10)

        def completed() -> bool:
            return {r.seq for r in f.runs() if r.key == key and r.outcome == "ok"} == set(range(5))

        await wait_for(completed, timeout=15)

        async def drained() -> bool:
            return await settled(redis, prefix, 2)

        await wait_for(drained, timeout=15, interval=0.05)
        results = await stored_results(redis, prefix, jobs)
    codes = await f.stop_all()
    assert all(code == 0 for code in codes.values()), codes

    # The new owner acquired the lease: the paused one had lost it, though it may
    # have been stopped less than a TTL (its last renewal came up to an interval
    # before the stop).
    assert epoch_b > epoch_a
    (zombie,) = started(a.member, 0)
    assert zombie.epoch == epoch_a
    assert zombie.start < pause.t0
    assert zombie.end is None, "the paused run finished after losing its lease"
    assert zombie.cancelled is not None and zombie.cancelled >= pause.t1
    (rerun,) = started(b.member, 0)
    assert (rerun.epoch, rerun.outcome) == (epoch_b, "ok")
    assert rerun.deliveries >= 2
    # Only the new owner's acknowledgement was applied: it stored its run's result.
    assert results[jobs[0].id] == {"member": b.member, "epoch": epoch_b, "run": rerun.run}
    assert [r for r in f.runs() if r.key == key and r.member == a.member and r.seq > 0] == []
    report = f.check({key: 5}, results=results, lease_ttl=0)
    report_figures(
        "ordered: SIGSTOP past the lease",
        {"SIGSTOP -> job re-run by the new owner": takeover, "SIGCONT -> rejoined": rejoin},
        report,
    )
    assert report.problems == [], "\n".join(report.problems)
    assert_clean_logs(f)


@pytest.mark.fault
async def test_partition_increase_while_running(
    server: Server, prefix: str, fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    """`trioqueue partitions --increase-to` while workers run and jobs flow: the new
    partitions get owners and nothing is lost. Keys that now hash elsewhere keep their
    order within each partition only (documented); the run counts what happened
    across the move. One job at a time per partition, so that a backlog builds up
    before the increase: keys that move still have jobs waiting in their old
    partition when their new jobs arrive in the new one."""
    before, after = 2, 6
    f = fleet(server, prefix, partitions=before, ordered=True, concurrency=1, min_ms=20, max_ms=40)
    producer = Producer(server, prefix, [f"key{i:02d}" for i in range(30)], 40)
    config = tmp_path / "ordered.toml"
    config.write_text(
        f'app = "tests.fault.ordered_worker:app"\n'
        f'[broker]\nurl = "{server.url}"\nprefix = "{prefix}"\n'
        f"[queues.{QUEUE}]\npartitions = {before}\nordered = true\n"
    )
    async with connected(server.url) as redis:
        leases = Leases(redis, prefix, before)
        since = trio.current_time()
        procs = await f.start_many("a", "b", "c")
        live = {p.member for p in procs}
        await leases.wait_assigned(live, since)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: producer.run(0.25, fresh_client=True))
            await wait_for(lambda: ok_runs(f) >= 200, timeout=30, interval=0.05)
            command = [str(TRIOQUEUE), "partitions", str(config), QUEUE, "--increase-to", "6"]
            cli: list[subprocess.CompletedProcess[bytes]] = []

            async def increase() -> None:
                with trio.fail_after(30):
                    cli.append(
                        await trio.run_process(
                            command,
                            cwd=REPO,
                            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
                            capture_stdout=True,
                            capture_stderr=True,
                            check=False,
                        )
                    )

            nursery.start_soon(increase)
            meta = PartitionKeys(prefix, QUEUE).meta

            async def stored() -> bool:
                return await redis.hget(meta, "partitions") == str(after).encode()

            # Timed from the moment the new count is stored, not from the command's
            # start (its Python start-up is no part of the rebalance).
            await wait_for(stored, timeout=30, interval=0.005)
            since = trio.current_time()
            leases.partitions = after
            grown = await leases.wait_assigned(live, since)
            await wait_for(lambda: bool(cli), timeout=30)
            assert cli[0].returncode == 0, cli[0].stderr.decode()
            assert f"{before} → {after} partitions" in cli[0].stdout.decode()
            await producer.done.wait()

            async def drained() -> bool:
                return await settled(redis, prefix, after)

            await wait_for(drained, timeout=30, interval=0.1)
        results = await stored_results(redis, prefix, producer.jobs)
        doc = await status_doc(server.url, prefix, [QUEUE], [QUEUE])
    codes = await f.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    assert len(doc["queues"][QUEUE]["partitions"]) == after
    assert sorted(p for m in doc["members"] for p in m["partitions"][QUEUE]) == list(range(after))
    assert {j.partition for j in producer.jobs} == set(range(after))
    report = f.check(producer.sent(), results=results, across_partitions=False)
    report_figures(
        "ordered: partitions 2 -> 6 while running",
        {"count stored -> new partitions owned, balanced": grown},
        report,
    )
    assert report.problems == [], "\n".join(report.problems[:30])
    assert report.moved_keys > 0
    assert grown <= REASSIGNED_WITHIN
    assert_clean_logs(f)


@pytest.mark.fault
async def test_lone_owner_paused_past_its_lease_takes_its_work_back_in_order(
    server: Server, prefix: str, fleet: Callable[..., Fleet]
) -> None:
    """The only worker is paused past its lease: once resumed it loses the partition,
    acquires it again under a new epoch and first re-runs what it had left pending
    (as the previous owner, under its own name), in order."""
    f = fleet(server, prefix, partitions=1, ordered=True)
    async with connected(server.url) as redis:
        leases = Leases(redis, prefix, 1)
        since = trio.current_time()
        a = await f.start("a")
        await leases.wait_assigned({a.member}, since)
        epoch = await leases.epoch(0)
        keys = ["k0", "k1", "k2"]
        steps = [Step(k, 0, ms=30_000, again_ms=50) for k in keys]
        steps += [Step(k, seq, ms=50) for seq in range(1, 5) for k in keys]
        async with app.connect(server.url, prefix=prefix) as client:
            jobs = await client.send_many(steps, key=lambda m: m.key)

        def first_runs() -> bool:
            return {r.key for r in f.runs() if r.seq == 0} == set(keys)

        await wait_for(first_runs, timeout=10)
        since = trio.current_time()
        stopped_at = await f.sigstop("a")
        await trio.sleep_until(since + TTL + 2 * INTERVAL)
        f.sigcont("a", stopped_at)
        since = trio.current_time()

        async def reacquired() -> bool:
            return await leases.epoch(0) > epoch

        await wait_for(reacquired, timeout=REASSIGNED_WITHIN)
        again = trio.current_time() - since

        async def drained() -> bool:
            return await settled(redis, prefix, 1)

        await wait_for(drained, timeout=15, interval=0.05)
        results = await stored_results(redis, prefix, jobs)
    codes = await f.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    runs = f.runs()
    report = f.check({k: 5 for k in keys}, results=results, lease_ttl=TTL)
    report_figures(
        "ordered: lone owner paused past its lease",
        {"SIGCONT -> partition acquired again": again},
        report,
    )
    assert report.problems == [], "\n".join(report.problems)
    first = [r for r in runs if r.seq == 0 and r.epoch == epoch]
    assert len(first) == 3 and all(r.cancelled is not None for r in first)
    redone = [r for r in runs if r.seq == 0 and r.outcome == "ok"]
    assert len(redone) == 3 and all(r.epoch > epoch and r.deliveries >= 2 for r in redone)
    assert "partition 0: took over" in a.stderr()
    assert_clean_logs(f)


@pytest.mark.fault
async def test_pauses_around_the_lease_ttl(
    server: Server, prefix: str, fleet: Callable[..., Fleet]
) -> None:
    """Workers paused again and again for about a TTL, as a starved or swapped-out
    process would be: some pauses cost the lease, some do not, and a member may take
    back the very partitions it lost. Order, exclusion and fencing hold throughout."""
    seed = random.randrange(1 << 32)
    print(f"pauses seed {seed}")
    rng = random.Random(seed)
    partitions = 8
    f = fleet(server, prefix, partitions=partitions, ordered=True)
    producer = Producer(server, prefix, [f"key{i:02d}" for i in range(30)], 40)
    async with connected(server.url) as redis:
        leases = Leases(redis, prefix, partitions)
        since = trio.current_time()
        procs = await f.start_many("a", "b", "c")
        await leases.wait_assigned({p.member for p in procs}, since)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer.run, 0.3)
            for _ in range(6):
                await progress(f, 60, 1200)
                name = rng.choice("abc")
                stopped_at = await f.sigstop(name)
                await trio.sleep(rng.uniform(TTL - 2 * INTERVAL, TTL + 2 * INTERVAL))
                f.sigcont(name, stopped_at)
            await producer.done.wait()

            async def drained() -> bool:
                return await settled(redis, prefix, partitions)

            await wait_for(drained, timeout=30, interval=0.1)
        results = await stored_results(redis, prefix, producer.jobs)
    codes = await f.stop_all()
    assert all(code == 0 for code in codes.values()), codes
    report = f.check(producer.sent(), results=results, lease_ttl=TTL)
    pauses = ", ".join(f"{x.t1 - x.t0:.2f}" for x in f.faults)
    report_figures(f"ordered: 6 pauses of {pauses}s (seed {seed})", {}, report)
    assert report.problems == [], "\n".join(report.problems[:30])
    assert_clean_logs(f)


@attrs.frozen
class Entry:
    key: str
    seq: int


async def test_read_whose_reply_was_lost_hands_the_partition_over(
    server: Server, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A fenced read that delivered entries but whose reply never arrived (the link
    dropped): the entries wait in the owner's pending list, unknown to it. It must
    not read past them; it hands the partition over and takes it back under a new
    epoch, running them first, in order."""
    caplog.set_level(logging.INFO, logger="trioqueue")
    ledger = trioqueue.App("lost-reply")
    ran: list[tuple[str, int, int]] = []

    @ledger.handler(queue="ledger", partitions=1, ordered=True, concurrency=4)
    async def entry(msg: Entry) -> None:
        ran.append((msg.key, msg.seq, trioqueue.current_job().epoch))
        await trio.sleep(0.01)

    lost: list[int] = []

    class LossyRedis:
        """The supervisor's client, losing the reply of the first fenced read that
        delivered entries."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        async def evalsha(self, sha: Any, keys: Any = None, args: Any = None) -> Any:
            res = await self._inner.evalsha(sha, keys=keys, args=args)
            if sha == ORDERED_FETCH.sha and res[0] and not lost:
                lost.append(len(res[0]))
                raise ConnectionError("connection reset while reading the reply")
            return res

    class LossySupervisor(trioqueue.Supervisor):
        _wrapped: Any

        @property
        def redis(self) -> Any:
            return self._wrapped

        @redis.setter
        def redis(self, value: Any) -> None:
            self._wrapped = LossyRedis(value)

    keys = ["a", "b", "c"]
    async with ledger.connect(server.url, prefix=prefix) as client:
        await client.send_many(
            [Entry(k, seq) for seq in range(10) for k in keys], key=lambda m: m.key
        )
    sup = LossySupervisor(ledger, make_config(server.url, prefix))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(ran) >= 30, timeout=15)
        sup.shutdown()
    assert lost and lost[0] > 0
    for k in keys:
        assert [seq for key, seq, _ in ran if key == k] == list(range(10)), ran
    assert {epoch for _, _, epoch in ran} == {2}
    assert "handing the partition over" in caplog.text
    assert "took over" in caplog.text
