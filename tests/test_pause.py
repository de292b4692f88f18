"""Pausing a queue against a real broker: across two workers, through a restart of one
of them while paused, and what a paused queue still does (sends, delayed jobs, the
jobs already running)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import Server, make_config, wait_for
from trioqueue._keys import PartitionKeys
from trioqueue._status import collect_status


@attrs.frozen
class Task:
    n: int


def paused_in(sup: trioqueue.Supervisor, queue: str) -> bool:
    return sup.registry.get_sample_value("trioqueue_queue_paused", {"queue": queue}) == 1


async def test_pause_holds_across_two_workers_and_a_restart(
    server: Server, prefix: str, redis: Any
) -> None:
    """A running job finishes after the pause; jobs sent while paused wait in the stream,
    a delayed one comes due into it; a worker restarted meanwhile fetches nothing; after
    the resume every job runs once."""
    app = trioqueue.App("pausing")
    seen: list[int] = []
    gate = trio.Event()
    first_started = trio.Event()

    @app.handler(queue="p", concurrency=4)
    async def handle(msg: Task) -> None:
        if msg.n == 0:
            first_started.set()
            await gate.wait()
        seen.append(msg.n)

    config = make_config(server.url, prefix)
    keys = PartitionKeys(prefix, "p")
    a, b = trioqueue.Supervisor(app, config), trioqueue.Supervisor(app, config)
    async with (
        trio.open_nursery() as nursery,
        app.connect(server.url, prefix=prefix) as client,
    ):
        await nursery.start(a.run)
        b_done = trio.Event()

        async def run_b() -> None:
            await b.run()
            b_done.set()

        nursery.start_soon(run_b)
        await b.wait_started()
        await client.send(Task(0))
        await first_started.wait()

        assert await client.pause("p") is True
        assert await client.pause("p") is False
        await wait_for(lambda: paused_in(a, "p") and paused_in(b, "p"))
        gate.set()  # the running job still finishes
        await wait_for(lambda: seen == [0])

        await client.send_many([Task(n) for n in range(1, 6)])
        await client.send(Task(6), delay=0.05)
        b.shutdown()  # restart one worker while paused
        await b_done.wait()
        c = trioqueue.Supervisor(app, config)
        await nursery.start(c.run)
        assert paused_in(c, "p")
        # A negative claim needs time: several block intervals (0.1 s) and scheduler
        # passes in which nothing may start.
        await trio.sleep(0.6)
        assert seen == [0]
        assert await redis.xlen(keys.stream) == 6  # the delayed one came due meanwhile
        assert await redis.zcard(keys.delayed) == 0

        assert await client.resume("p") is True
        assert await client.resume("p") is False
        await wait_for(lambda: sorted(seen) == list(range(7)))
        await wait_for(lambda: not paused_in(a, "p") and not paused_in(c, "p"))
        a.shutdown()
        c.shutdown()
    assert sorted(seen) == list(range(7))
    assert await redis.xlen(keys.stream) == 0


async def test_pause_flag_is_caught_up_without_the_control_message(
    server: Server, prefix: str, redis: Any
) -> None:
    """A flag set behind the workers' back (no message published) is read within a
    block interval by the pause watch; deleting it resumes the queue."""
    app = trioqueue.App("watch")
    seen: list[int] = []

    @app.handler(queue="w")
    async def handle(msg: Task) -> None:
        seen.append(msg.n)

    sup = trioqueue.Supervisor(app, make_config(server.url, prefix))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await redis.set(PartitionKeys(prefix, "w").paused, "1")
        await wait_for(lambda: paused_in(sup, "w"), timeout=2)
        await redis.delete([PartitionKeys(prefix, "w").paused])
        await wait_for(lambda: not paused_in(sup, "w"), timeout=2)
        async with app.connect(server.url, prefix=prefix) as client:
            await client.send(Task(1))
        await wait_for(lambda: seen == [1])
        sup.shutdown()


async def test_status_shows_paused_queues(server: Server, prefix: str) -> None:
    """``"paused": true`` on the queue's entry of the status document, and the sync
    client pauses and resumes the same way."""
    app = trioqueue.App("status")

    @app.handler(queue="s")
    async def handle(msg: Task) -> None:
        pass

    with app.connect_sync(server.url, prefix=prefix) as sync:
        assert await trio.to_thread.run_sync(sync.pause, "s") is True
    async with app.connect(server.url, prefix=prefix) as client:
        doc = await collect_status(client.redis, prefix, ["s"])
        assert doc["queues"]["s"]["paused"] is True
        assert await client.resume("s") is True
        doc = await collect_status(client.redis, prefix, ["s"])
        assert doc["queues"]["s"]["paused"] is False
        with pytest.raises(ValueError, match="invalid queue name"):
            await client.pause("no{tags}")
