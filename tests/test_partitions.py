"""Partitioned queues in one process: routing, stored count, lookups by bare job id."""

from __future__ import annotations

import zlib

import attrs
import trio

import trioqueue
from tests.conftest import make_config, wait_for
from trioqueue._keys import PartitionKeys
from trioqueue._routing import partition_for


@attrs.frozen
class Item:
    user: str
    n: int


def make_app(seen: list[Item], fail: bool = False) -> trioqueue.App:
    app = trioqueue.App("parts")

    @app.handler(queue="items", partitions=4, retries=0)
    async def handle(msg: Item) -> int:
        seen.append(msg)
        if fail:
            raise ValueError("no")
        return msg.n

    return app


def test_partition_for_is_crc32_of_the_key() -> None:
    """The documented routing: CRC-32 of the UTF-8 key, modulo the partition count."""
    for key in ["user-42", "ключ", "a", ""]:
        assert partition_for(key or None, 1) == 0
        if key:
            assert partition_for(key, 8) == zlib.crc32(key.encode()) % 8
    assert {partition_for(None, 4) for _ in range(200)} == {0, 1, 2, 3}


async def test_keyed_sends_land_in_their_partition_and_all_are_processed(
    config: trioqueue.Config, redis: object
) -> None:
    """Same key → same partition stream; workers consume every partition."""
    seen: list[Item] = []
    app = make_app(seen)
    prefix = config.broker.prefix
    async with app.connect(config.broker.url or "", prefix=prefix) as client:
        jobs = await client.send_many(
            [Item(f"u{i % 7}", i) for i in range(70)], key=lambda m: m.user
        )
        for job in jobs:
            assert job.partition == partition_for(f"u{job_index(jobs, job) % 7}", 4)
        lengths = [
            await redis.xlen(PartitionKeys(prefix, "items", p).stream)  # type: ignore[attr-defined]
            for p in range(4)
        ]
        assert sum(lengths) == 70
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await wait_for(lambda: len(seen) == 70)
            # A bare job id is found in whichever partition holds it.
            job = jobs[5]
            assert await client.result(job.id, queue="items", timeout=5) == 5
            assert (await client.status(job.id, queue="items")).state == "succeeded"
            sup.shutdown()


def job_index(jobs: list[trioqueue.Job], job: trioqueue.Job) -> int:
    return jobs.index(job)


async def test_stored_partition_count_wins_over_config(any_config: trioqueue.Config) -> None:
    """A worker configured with fewer partitions uses the count stored in Redis."""
    config = any_config
    seen: list[Item] = []
    app = make_app(seen)
    url, prefix = config.broker.url or "", config.broker.prefix
    first = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        first.shutdown()
    fewer = make_config(url, prefix, queues={"items": {"partitions": 2}})
    sup = trioqueue.Supervisor(app, fewer)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert sup.settings["items"].partitions == 4
        assert {"items", "items:1", "items:2", "items:3"} <= set(sup.statistics().consumers)
        sup.shutdown()


async def test_dead_letters_and_cancel_span_partitions(any_config: trioqueue.Config) -> None:
    """DLQ listing/retry/purge cover every partition; cancel finds a bare id anywhere."""
    config = any_config
    seen: list[Item] = []
    app = make_app(seen, fail=True)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        await client.send_many([Item(f"k{i}", i) for i in range(8)], key=lambda m: m.user)
        later = await client.send(Item("late", 99), key="late", delay=60)
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await wait_for(lambda: len(seen) == 8)

            async def all_dead() -> bool:
                return len(await client.dead_letters("items")) == 8

            await wait_for(all_dead)
            letters = await client.dead_letters("items")
            assert len({d.partition for d in letters}) > 1
            assert await client.cancel(later.id, queue="items") == "removed"
            sup.shutdown()
        assert await client.retry_dead_letters("items") == (8, 0)
        assert await client.dead_letters("items") == []
        assert await client.purge_dead_letters("items") == 0
        # A bare id without queue= is looked for in every queue: unknown, not an error.
        assert await client.cancel("x") == "unknown"
