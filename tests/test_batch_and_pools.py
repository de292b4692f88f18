"""Batch handlers, thread handlers and process-pool handlers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import attrs
import trio

import trioqueue
from tests.conftest import wait_for
from tests.handlers_for_processes import Crunch, Steer, WhoAmI, crunch, steer, whoami
from trioqueue._keys import PartitionKeys

NO_RETRY = trioqueue.Backoff(initial=0.01, factor=1.0, max=0.01, jitter=0.0)


@attrs.frozen
class Row:
    n: int


def batch_app(batches: list[list[int]], **kw: object) -> trioqueue.App:
    app = trioqueue.App("batch")

    @app.handler(queue="rows", retries=0, **kw)  # type: ignore[arg-type]
    async def save(rows: list[Row]) -> None:
        batches.append([r.n for r in rows])
        bad = [i for i, r in enumerate(rows) if r.n < 0]
        if bad:
            raise trioqueue.BatchFailed(failed=bad)

    return app


async def test_batches_by_size_then_by_interval(config: trioqueue.Config) -> None:
    """Full batches go at once; the remainder goes after flush_interval."""
    batches: list[list[int]] = []
    app = batch_app(batches, batch_size=5, flush_interval=0.5)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        await client.send_many([Row(i) for i in range(12)])
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: sum(map(len, batches)) == 12)
        sup.shutdown()
    assert sorted(n for b in batches for n in b) == list(range(12))
    assert max(map(len, batches)) == 5
    assert [len(b) for b in batches].count(5) == 2


async def test_partial_batch_failure_fails_only_those(
    config: trioqueue.Config, redis: object
) -> None:
    """BatchFailed([i]) dead-letters (retries=0) only message i; the rest are acked."""
    batches: list[list[int]] = []
    app = batch_app(batches, batch_size=4, flush_interval=0.2)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        await client.send_many([Row(1), Row(-2), Row(3), Row(4)])
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: sup.statistics().consumers["rows"].dead == 1)
        await wait_for(lambda: sup.statistics().consumers["rows"].succeeded == 3)
        sup.shutdown()
    keys = PartitionKeys(config.broker.prefix, "rows")
    dead = await redis.xrange(keys.dead)  # type: ignore[attr-defined]
    assert [e.field_values[b"body"] for e in dead] == [b'{"n":-2}']
    assert await redis.xlen(keys.stream) == 0  # type: ignore[attr-defined]


async def test_shutdown_flushes_a_partial_batch(config: trioqueue.Config) -> None:
    """A batch still filling when shutdown starts is run, not abandoned."""
    batches: list[list[int]] = []
    app = batch_app(batches, batch_size=100, flush_interval=60)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        await client.send_many([Row(i) for i in range(3)])
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: sup.statistics().consumers["rows"].running == 3)
        sup.shutdown()
    assert len(batches) == 1 and sorted(batches[0]) == [0, 1, 2]
    assert sup.statistics().consumers["rows"].succeeded == 3


async def test_plain_def_runs_in_a_worker_thread(config: trioqueue.Config) -> None:
    """A sync handler runs off the Trio thread."""
    threads: list[int] = []
    app = trioqueue.App("threads")

    @app.handler(queue="t")
    def work(msg: Row) -> None:
        threads.append(threading.get_ident())

    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        await client.send(Row(1))
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(threads) == 1)
        sup.shutdown()
    assert threads[0] != threading.get_ident()


async def test_process_handler_timeout_kills_child_and_crash_fails_attempt(
    config: trioqueue.Config,
) -> None:
    """run_in="process": results come back; a timeout kills the work; a crash fails it."""
    app = trioqueue.App("procs")
    app.handler(queue="p", run_in="process", timeout=4.0, retries=0, backoff=NO_RETRY)(crunch)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        ok = await client.send(Crunch(1))
        slow = await client.send(Crunch(2, sleep=30))
        crash = await client.send(Crunch(3, crash=True))
        after = await client.send(Crunch(4))
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            pid = await client.result(ok, timeout=20)
            assert isinstance(pid, int) and pid != os.getpid()
            try:
                await client.result(slow, timeout=20)
                raise AssertionError("the slow job should have timed out")
            except trioqueue.JobFailed as exc:
                assert exc.error_type == "Timeout"
            try:
                await client.result(crash, timeout=20)
                raise AssertionError("the crashing job should have failed")
            except trioqueue.JobFailed as exc:
                assert exc.error_type.startswith("BrokenWorker")
            assert isinstance(await client.result(after, timeout=20), int)
            sup.shutdown()


async def test_process_handler_can_raise_retry_and_reject(
    config: trioqueue.Config, tmp_path: Path
) -> None:
    """Retry and Reject raised in a child process steer the job as in-process ones do."""
    app = trioqueue.App("steered")
    app.handler(queue="s", run_in="process", retries=2)(steer)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        retried = await client.send(Steer("retry", str(tmp_path / "tried")))
        rejected = await client.send(Steer("reject"))
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert await client.result(retried, timeout=20) == "done"
            try:
                await client.result(rejected, timeout=20)
                raise AssertionError("the rejected job should have been dead-lettered")
            except trioqueue.JobFailed as exc:
                assert exc.error_type == "Reject"
                assert "rejected in the child" in exc.error
            assert sup.statistics().queues["s"].retried == 1
            sup.shutdown()


async def test_current_job_answers_in_a_child_process(config: trioqueue.Config) -> None:
    """A process handler's current_job() is its job; without a tracer provider there is
    no current span in the child."""
    app = trioqueue.App("whoami")
    app.handler(queue="w", run_in="process")(whoami)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        job = await client.send(WhoAmI(1))
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            job_id, attempt, pid, trace_id, _ = await client.result(job, timeout=30)
            sup.shutdown()
    assert (job_id, attempt) == (job.id, 1)
    assert pid != os.getpid()
    assert int(trace_id, 16) == 0
