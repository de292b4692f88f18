"""A broker out of memory (noeviction) can still be drained by the workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import Server, free_port, make_config
from trioqueue._embedded import find_server_binary
from trioqueue._keys import PartitionKeys


@attrs.frozen
class Blob:
    data: str


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        find_server_binary(),
        free_port(),
        tmp_path,
        extra=["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"],
    )
    srv.start()
    yield srv
    srv.stop()


async def test_full_broker_refuses_sends_but_workers_drain_it(
    small_server: Server, prefix: str
) -> None:
    """Sends fail with a clear OOM error; a worker started on the full server drains it."""
    done: list[str] = []
    app = trioqueue.App("oom")

    @app.handler(queue="blobs")
    async def handle(msg: Blob) -> None:
        done.append(msg.data[:1])

    sent = 0
    async with app.connect(small_server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.BrokerError, match="OOM"):
            for _ in range(10_000):
                await client.send_many([Blob("x" * 2000) for _ in range(20)])
                sent += 20
    assert sent > 0
    cfg = make_config(small_server.url, prefix)
    sup = trioqueue.Supervisor(app, cfg, burst=True)
    with trio.fail_after(60):
        await sup.run()
    assert len(done) == sent
    async with app.connect(small_server.url, prefix=prefix) as client:
        assert await client.redis.xlen(PartitionKeys(prefix, "blobs").stream) == 0
        # Once drained, there is room again.
        await client.send(Blob("again"))


async def test_full_broker_drains_ordered_queues_too(small_server: Server, prefix: str) -> None:
    """Leases, fenced reads and the takeover claim work on a full broker."""
    done: list[str] = []
    app = trioqueue.App("oom-ordered")

    @app.handler(queue="steps", partitions=2, ordered=True)
    async def handle(msg: Blob) -> None:
        done.append(msg.data[:1])

    sent = 0
    async with app.connect(small_server.url, prefix=prefix) as client:
        with pytest.raises(trioqueue.BrokerError, match="OOM"):
            for i in range(10_000):
                await client.send_many(
                    [Blob("y" * 2000) for _ in range(20)], key=lambda _, i=i: f"k{i % 5}"
                )
                sent += 20
    sup = trioqueue.Supervisor(app, make_config(small_server.url, prefix), burst=True)
    with trio.fail_after(60):
        await sup.run()
    assert len(done) == sent
