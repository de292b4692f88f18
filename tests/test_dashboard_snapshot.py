"""The dashboard's snapshot: history read through one function, outages ridden out."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Server, make_config, wait_for
from tests.dashboard_app import app
from trioqueue._keys import PartitionKeys
from trioqueue.dashboard import Dashboard
from trioqueue.dashboard._history import history_key


async def test_history_is_summed_over_partitions_per_minute(
    server: Server, prefix: str, redis: Any
) -> None:
    """History hashes of two partitions add up in their minute; other minutes are 0;
    a queue without any history key reads as None ("no history yet")."""
    d = Dashboard(make_config(server.url, prefix, dashboard={"interval": 0.1}), app=app)
    async with d.running():
        await redis.hset(PartitionKeys(prefix, "ordered", 0).meta, {"partitions": "2"})
        now_minute = int((await redis.time()).timestamp()) // 60
        for partition, counts in ((0, {"succeeded": 3, "failed": 1}), (1, {"succeeded": 4})):
            key = history_key(PartitionKeys(prefix, "ordered", partition), now_minute - 1)
            await redis.hset(key, counts)
        d.snapshots.refresh_soon()
        await d.snapshots.next_snapshot()
        d.snapshots.refresh_soon()
        snap = await d.snapshots.next_snapshot()
        assert snap is not None
        points = snap.queues["ordered"]["history"]
        assert len(points) == 60
        at = [p for p in points if p["minute"] == (now_minute - 1) * 60_000]
        assert at == [
            {
                "minute": (now_minute - 1) * 60_000,
                "succeeded": 7,
                "failed": 1,
                "dead": 0,
            }
        ]
        assert sum(p["succeeded"] for p in points) == 7
        assert snap.queues["work"]["history"] is None


async def test_snapshot_keeps_the_last_one_while_the_broker_is_down(
    private_server: Server, prefix: str
) -> None:
    """A failed snapshot keeps serving the last good one and says why; the next one
    after the broker is back clears the error."""
    d = Dashboard(make_config(private_server.url, prefix, dashboard={"interval": 0.1}), app=app)
    async with (
        d.running(),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=d.asgi), base_url="http://127.0.0.1"
        ) as client,
    ):
        before = (await client.get("/api/status")).json()
        private_server.kill()
        await wait_for(lambda: d.snapshots.error is not None)
        assert (await client.get("/api/status")).json() == before
        overview = (await client.get("/api/overview")).json()
        assert overview["snapshot_error"]
        assert "broker" in (await client.get("/")).text
        private_server.start()
        await wait_for(lambda: d.snapshots.error is None, timeout=20)
        assert (await client.get("/api/overview")).json()["snapshot_error"] is None


class CountingRedis:
    """trioqueue's client on the test server, counting the commands of pipelines."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.commands = 0

    async def pipeline(self, commands: list[Any]) -> list[Any]:
        self.commands += len(commands)
        return list(await self.inner.pipeline(commands))


async def test_history_reader_reads_settled_minutes_once(broker: Any, prefix: str) -> None:
    """The first read covers the hour; later ones only the last two minutes of each
    partition, with the same result."""
    from trioqueue.dashboard._history import HistoryReader, read_history

    redis = CountingRedis(broker)
    reader = HistoryReader()
    now_ms = 1_700_000_000_000
    key = history_key(PartitionKeys(prefix, "q", 1), now_ms // 60_000 - 30)
    await broker.execute("HSET", key, "succeeded", 5)
    first = await reader(redis, prefix, "q", 2, now_ms)  # type: ignore[arg-type]
    assert redis.commands == 120
    again = await reader(redis, prefix, "q", 2, now_ms + 1)  # type: ignore[arg-type]
    assert redis.commands == 124
    assert first == again == await read_history(broker, prefix, "q", 2, now_ms)
    assert first is not None
    assert sum(p["succeeded"] for p in first) == 5
    await broker.execute("DEL", key)
