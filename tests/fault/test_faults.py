"""Fault injection: kill, pause and cut off workers and the broker while jobs flow.

Each test runs real worker processes (``worker_main.py``) and a rate-limited
producer, injects faults, waits until everything settled and then checks the
recorded history against the broker's final state (see ``history.py``): no
acknowledged send lost, every job settled, duplicates only of jobs a fault hit.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest
import trio

from tests.conftest import Server, wait_for
from tests.fault.harness import FIGURES, Nemesis, Producer, Workers, drain, finish
from tests.fault.history import Report, load, now_ns

pytestmark = pytest.mark.fault


def assert_sound(report: Report) -> None:
    problems = report.problems()
    assert not problems, "\n".join([*problems, report.summary()])


def assert_healthy(workers: Workers, codes: dict[str, int | None]) -> None:
    """Every worker not killed on purpose ran until told to stop, then exited 0."""
    assert all(code == 0 for code in codes.values()), codes
    assert "unexpected error" not in workers.stderr_of_all()


def member_starts(workers: Workers, member: str, after_ns: int = 0) -> int:
    return sum(
        1
        for e in load(workers.history)
        if e["ev"] == "start" and e.get("member") == member and e["t"] > after_ns
    )


async def test_sigkill_worker_jobs_are_reclaimed(
    server: Server, prefix: str, workers: Callable[..., Workers]
) -> None:
    w = workers(server, prefix, min_ms=100, max_ms=300)
    await w.start("a")
    await w.start("b")
    producer = Producer(server.url, prefix, w.history)
    nemesis = Nemesis(server, prefix, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer.run, 400, 60.0)
        await nemesis.wait_held("a", 3)
        victim = w.slots["a"].member
        await nemesis.sigkill("a", restart_after=0.7)
        await drain(server, prefix, producer, timeout=30)
    report, codes = await finish("sigkill", server, prefix, w)
    assert_sound(report)
    (fault,) = report.faults
    # It died holding jobs (some may have settled between the wait and the kill).
    assert fault.inflight
    assert report.duplicated <= len(fault.inflight)
    assert f"jobs of dead member {victim}" in w.stderr_of_all()
    assert_healthy(w, codes)


async def test_sigstop_past_ttl_is_fenced_and_rejoins(
    server: Server, prefix: str, workers: Callable[..., Workers]
) -> None:
    # Jobs of 150-400 ms, and every 60th runs 9 s: when the worker stops (4 s), it holds
    # short jobs (done on waking, their acks fenced) and a long one (still running on
    # waking: its renewal finds it taken over and cancels it). The long job's 9 s leave
    # 5 s between its start and the stop for the second worker to start on a loaded
    # machine (with 6 s, a slow start let it end before the worker woke). The rate
    # leaves the other worker room to take them all over.
    w = workers(server, prefix, min_ms=150, max_ms=400, long_ms=9000)
    a = await w.start("a")
    producer = Producer(server.url, prefix, w.history)
    nemesis = Nemesis(server, prefix, w)
    kinds = {f"j{i:06d}": "long" if i % 60 == 5 else "ok" for i in range(300)}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer.run, 300, 30.0, lambda i: kinds[f"j{i:06d}"])
        # Alone until it runs a long job (with two workers, which one takes it is luck).
        await wait_for(lambda: w.started(a.member, kinds, "long"), timeout=15)
        await w.start("b")
        await nemesis.wait_held("a", 3)
        # A short job running the moment it stops: it ends on waking and its ack is
        # fenced. (Entries delivered by a read still in flight at the stop start only
        # on waking, and the renewal fences those before they end.)
        await wait_for(lambda: w.started(a.member, kinds, "ok"), timeout=10, interval=0.005)
        long_jobs = w.started(a.member, kinds, "long")
        await nemesis.sigstop("a", duration=4.0)
        resumed = now_ns()
        await wait_for(lambda: "refused: another member owns it now" in a.stderr(), timeout=10)
        # It keeps working after it noticed.
        await wait_for(lambda: member_starts(w, a.member, resumed) > 0, timeout=10)
        await drain(server, prefix, producer, timeout=30)
    assert a.alive()
    report, codes = await finish("sigstop", server, prefix, w)
    assert_sound(report)
    assert report.fenced >= 1
    log = a.stderr()
    assert "heartbeat lapsed" in log
    cancelled = {
        e["job"]
        for e in load(w.history)
        if e["ev"] == "finish" and e["outcome"] == "cancelled" and e["member"] == a.member
    }
    assert cancelled & set(long_jobs), (long_jobs, cancelled)
    for job in cancelled & set(long_jobs):
        assert f"renewal of entry {entry_of(w, job, a.member)} refused" in log
    assert "Traceback" not in log
    assert_healthy(w, codes)


def entry_of(workers: Workers, job: str, member: str) -> str:
    return next(
        e["entry"]
        for e in load(workers.history)
        if e["ev"] == "start" and e["job"] == job and e["member"] == member
    )


async def test_server_kill_and_restart(
    private_server: Server, prefix: str, workers: Callable[..., Workers]
) -> None:
    server = private_server
    w = workers(server, prefix, min_ms=20, max_ms=80)
    await w.start("a")
    await w.start("b")
    producer = Producer(server.url, prefix, w.history)
    nemesis = Nemesis(server, prefix, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer.run, 600, 100.0)
        await trio.sleep(2.0)
        await nemesis.wait_held("a", 1)
        await nemesis.server_restart(down=2.0)
        await drain(server, prefix, producer, timeout=30)
    report, codes = await finish("server kill -9", server, prefix, w)
    assert_sound(report)
    for wp in w.every:
        log = wp.stderr()
        assert log.count("broker unreachable") == 1, log
        assert log.count("reachable again") == 1, log
    assert_healthy(w, codes)


async def test_client_kill_and_pause(
    private_server: Server, prefix: str, workers: Callable[..., Workers]
) -> None:
    server = private_server
    w = workers(server, prefix, min_ms=20, max_ms=80)
    await w.start("a")
    await w.start("b")
    producer = Producer(server.url, prefix, w.history)
    nemesis = Nemesis(server, prefix, w)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer.run, 600, 100.0)
        await trio.sleep(1.5)
        await nemesis.wait_held("a", 1)
        await nemesis.client_kill()
        await trio.sleep(1.5)
        await nemesis.wait_held("b", 1)
        await nemesis.client_pause(1500)
        await drain(server, prefix, producer, timeout=30)
    report, codes = await finish("client kill + pause", server, prefix, w)
    assert_sound(report)
    assert_healthy(w, codes)


async def test_poison_job_is_dead_lettered_after_max_deliveries(
    server: Server, prefix: str, workers: Callable[..., Workers]
) -> None:
    max_deliveries = 3
    # One worker, busy with jobs long enough that others run beside the poison job
    # whenever it strikes: each death charges them a delivery too.
    w = workers(server, prefix, min_ms=100, max_ms=200, max_deliveries=max_deliveries)
    await w.start("a")
    producer = Producer(server.url, prefix, w.history)
    nemesis = Nemesis(server, prefix, w)
    deaths = 0

    async def restart_dead() -> None:
        # A process manager: bring back whatever died.
        nonlocal deaths
        while True:
            for slot, wp in list(w.slots.items()):
                if not wp.alive() and not wp.killed:
                    wp.killed = True
                    deaths += 1
                    await nemesis.crashed(wp)
                    await trio.sleep(0.3)
                    await w.start(slot, may_die=True)
            await trio.sleep(0.05)

    poison = 100
    async with trio.open_nursery() as nursery:
        nursery.start_soon(restart_dead)
        nursery.start_soon(producer.run, 300, 50.0, lambda i: "poison" if i == poison else "ok")
        await drain(server, prefix, producer, timeout=45)
        nursery.cancel_scope.cancel()
    report, codes = await finish(
        "poison job",
        server,
        prefix,
        w,
        expected_dead={f"j{poison:06d}": "MaxDeliveriesExceeded"},
    )
    assert_sound(report)
    assert deaths == max_deliveries
    # Other jobs were in flight when it struck, and none of them was dead-lettered.
    assert report.in_flight_at_faults > deaths
    assert report.acked == 299
    assert_healthy(w, codes)


async def test_chaos(private_server: Server, prefix: str, workers: Callable[..., Workers]) -> None:
    # Replay a failed run with TRIOQUEUE_CHAOS_SEED=<the seed it printed>.
    seed = int(os.environ.get("TRIOQUEUE_CHAOS_SEED") or random.randrange(1 << 32))
    print(f"chaos seed {seed}")
    rng = random.Random(seed)
    server = private_server
    started = trio.current_time()
    w = workers(server, prefix, min_ms=20, max_ms=80)
    slots = ["a", "b", "c"]
    for slot in slots:
        await w.start(slot)
    producer = Producer(server.url, prefix, w.history)
    nemesis = Nemesis(server, prefix, w)
    n = 5000

    def kind(i: int) -> str:
        r = rng.random()
        return "flaky" if r < 0.01 else "fail" if r < 0.015 else "ok"

    kinds = [kind(i) for i in range(n)]
    faults: list[str] = ["sigkill"] * 6 + ["sigstop"] * 2 + ["server", "client-kill", "pause"]
    rng.shuffle(faults)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer.run, n, 125.0, kinds.__getitem__)
        await trio.sleep(1.0)
        for fault in faults:
            slot = rng.choice(slots)
            if fault == "sigkill":
                await nemesis.sigkill(slot, restart_after=rng.uniform(0.5, 1.0))
            elif fault == "sigstop":
                await nemesis.sigstop(slot, duration=2.5)
            elif fault == "server":
                await nemesis.server_restart(down=2.0)
            elif fault == "client-kill":
                await nemesis.client_kill()
            else:
                await nemesis.client_pause(1500)
            await trio.sleep(rng.uniform(1.0, 2.0))
        await drain(server, prefix, producer, timeout=30)
    report, codes = await finish(
        "chaos",
        server,
        prefix,
        w,
        expected_dead={f"j{i:06d}": "RuntimeError" for i, k in enumerate(kinds) if k == "fail"},
    )
    elapsed = trio.current_time() - started
    FIGURES.append(("chaos run", f"seed {seed}; {elapsed:.1f}s from first start to checked"))
    assert_sound(report)
    assert report.jobs_sent == n
    assert report.faults_by_kind() == {
        "sigkill": 6,
        "sigstop": 2,
        "server-kill": 1,
        "client-kill": 1,
        "client-pause": 1,
    }
    assert_healthy(w, codes)
    assert elapsed <= 90
