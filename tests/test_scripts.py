"""Typed script calls against a real server, where no client or worker test reaches
them directly: taking over a job delivered too often dead-letters it with its keys."""

from __future__ import annotations

from typing import Any

import orjson

from trioqueue import _scripts as scripts
from trioqueue._keys import GROUP, PartitionKeys


async def _delivered_once(redis: Any, broker: Any, keys: PartitionKeys, job_id: str) -> str:
    """Send a job with a caller-chosen id and deliver it to a consumer that vanishes."""
    await scripts.run(broker, scripts.ensure_group(keys))
    sent = await scripts.run(
        broker,
        scripts.send(
            keys, [(job_id, "T", b"{}", "")], max_length=0, max_message_bytes=0, unique=True, due=0
        ),
    )
    await redis.xreadgroup(GROUP, "ghost", streams={keys.stream: ">"}, count=1)
    return sent.entry_ids[0]


def _reclaim(keys: PartitionKeys) -> scripts.Call[scripts.Reclaimed]:
    return scripts.reclaim(
        keys,
        consumer="me",
        min_idle_ms=0,
        count=10,
        owner="",
        max_deliveries=1,
        suspect_at=0,
        idle=False,
        own=False,
    )


def _reclaim_dead(keys: PartitionKeys, over: list[tuple[str, str]]) -> Any:
    return scripts.reclaim_dead(
        keys,
        consumer="me",
        min_idle_ms=0,
        max_deliveries=1,
        worker="me",
        result_ttl_ms=60_000,
        own=False,
        entries=over,
    )


async def test_reclaim_leaves_a_job_past_max_deliveries_to_reclaim_dead(
    redis: Any, broker: Any, prefix: str
) -> None:
    keys = PartitionKeys(prefix, "q")
    entry = await _delivered_once(redis, broker, keys, "job-1")
    await redis.set(keys.result_wait("job-1"), b"1")

    got = await scripts.run(broker, _reclaim(keys))
    assert (got.claimed, got.over, got.lost) == ([], [(entry, "job-1")], 0)
    buried = await scripts.run(broker, _reclaim_dead(keys, got.over))

    assert (buried.dead, buried.lost) == (1, 0)
    assert await redis.xlen(keys.stream) == 0
    (dead,) = await redis.xrange(keys.dead)
    fields = {k.decode(): v.decode() for k, v in dead.field_values.items()}
    assert fields["error_type"] == "MaxDeliveriesExceeded"
    assert fields["error"] == "delivered 2 times (max_deliveries=1); last owner ghost"
    assert (fields["id"], fields["source_id"], fields["worker"]) == ("job-1", entry, "me")
    outcome = orjson.loads(await redis.get(keys.result("job-1")))
    assert outcome == {
        "state": "failed",
        "error_type": "MaxDeliveriesExceeded",
        "error": "delivered 2 times",
    }
    assert await redis.lrange(keys.result_done("job-1"), 0, -1) == [b"1"]
    assert 0 < await redis.pttl(keys.unique("job-1")) <= 60_000


async def test_reclaim_dead_leaves_a_job_settled_since_it_was_listed(
    redis: Any, broker: Any, prefix: str
) -> None:
    keys = PartitionKeys(prefix, "q")
    entry = await _delivered_once(redis, broker, keys, "job-2")
    got = await scripts.run(broker, _reclaim(keys))
    await redis.xack(keys.stream, GROUP, [entry])  # its owner woke up and settled it

    buried = await scripts.run(broker, _reclaim_dead(keys, got.over))

    assert (buried.dead, buried.lost) == (0, 0)
    assert await redis.xlen(keys.dead) == 0
    assert await redis.get(keys.result("job-2")) is None


async def test_run_loads_a_script_the_server_forgot(redis: Any, broker: Any) -> None:
    await redis.script_flush()
    assert await scripts.run(broker, scripts.server_time()) > 0  # NOSCRIPT, then loaded
    assert await scripts.run(broker, scripts.server_time()) > 0  # by SHA


def test_run_sync_loads_a_script_the_server_forgot(server: Any) -> None:
    import redis as redis_py

    from trioqueue._sync_redis import run_sync

    sync = redis_py.Redis.from_url(server.url)
    try:
        sync.script_flush()
        assert run_sync(sync, scripts.server_time()) > 0
        assert run_sync(sync, scripts.server_time()) > 0
    finally:
        sync.close()
