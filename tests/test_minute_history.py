"""The per-minute job history against a real broker: the counts equal what the worker
did, `status` shows them as rates, and the history costs a few increments per
acknowledgement batch, never one per job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import orjson
import trio
from typer.testing import CliRunner

import trioqueue
from tests.conftest import Server, make_config, running, wait_for
from trioqueue._cli import cli
from trioqueue._history import FIELDS
from trioqueue._keys import PartitionKeys
from trioqueue._status import collect_status

FAST = trioqueue.Backoff(initial=0.01, factor=1.0, max=0.01, jitter=0.0)


@attrs.frozen
class Work:
    kind: str  # ok, slow (20 ms), flaky (fails its first attempt), bad (always fails)
    n: int = 0


def make_app(name: str = "history", **queue: Any) -> trioqueue.App:
    app = trioqueue.App(name)

    @app.handler(queue="h", retries=1, backoff=FAST, **queue)
    async def handle(msg: Work) -> None:
        attempt = trioqueue.current_job().attempt
        if msg.kind == "slow":
            await trio.sleep(0.02)
        if msg.kind == "bad" or (msg.kind == "flaky" and attempt == 1):
            raise ValueError(f"{msg.kind} attempt {attempt}")

    return app


def totals(doc: dict[str, Any], queue: str) -> dict[str, int]:
    """A queue's history in a status document, summed over its minutes."""
    return {f: sum(m[f] for m in doc["queues"][queue]["history"]) for f in FIELDS}


async def test_history_counts_equal_the_jobs_processed(server: Server, prefix: str) -> None:
    """Three successes (two of 20 ms), two jobs that succeed on their retry and one
    dead after two attempts, over two partitions: the history (summed over partitions
    and the last minutes) holds exactly those counts, at least the handler time of the
    slow runs, and each minute's hash expires after history_hours."""
    app = make_app(partitions=2)
    config = make_config(server.url, prefix, metrics={"history_hours": 0.5})
    async with running(app, config) as sup, app.connect(server.url, prefix=prefix) as client:
        jobs = [Work("ok"), Work("slow", 1), Work("slow", 2), Work("flaky", 1), Work("flaky", 2)]
        await client.send_many([*jobs, Work("bad")], key=lambda m: f"{m.kind}{m.n}")

        def settled() -> bool:
            stats = sup.statistics().queues["h"]
            return stats.succeeded == 5 and stats.dead == 1

        await wait_for(settled)
        await wait_for(lambda: sup.statistics().queues["h"].running == 0)

        async def written() -> bool:
            doc = await collect_status(client.redis, prefix, ["h"])
            return totals(doc, "h")["dead"] == 1 and totals(doc, "h")["succeeded"] == 5

        await wait_for(written)
        doc = await collect_status(client.redis, prefix, ["h"])
        got = totals(doc, "h")
        assert {k: v for k, v in got.items() if k != "handler_ms"} == {
            "succeeded": 5,
            "failed": 4,
            "retried": 3,
            "dead": 1,
            "cancelled": 0,
        }
        assert 40 <= got["handler_ms"] < 5000
        entry = doc["queues"]["h"]
        assert len(entry["history"]) == 5
        assert entry["rates"]["succeeded_per_second"] > 0
        assert entry["rates"]["window_seconds"] >= 240
        keys = await client.redis.execute("KEYS", f"{prefix}:*:history:*")
        assert keys, "no history hash written"
        for key in keys:
            ttl = await client.redis.execute("PTTL", key)
            assert 0 < ttl <= 1_800_000


async def test_history_is_a_few_increments_per_batch_not_one_per_job(
    private_server: Server,
) -> None:
    """A run of 1,000 jobs writes the history with far fewer HINCRBY than jobs
    (``INFO commandstats``): one per non-zero total of each acknowledgement batch."""
    app = make_app("history-cost", concurrency=200)
    config = make_config(private_server.url, "cost")
    async with app.connect(private_server.url, prefix="cost") as client:
        await client.send_many([Work("ok", i) for i in range(1000)])
        await client.redis.execute("CONFIG", "RESETSTAT")
        async with running(app, config) as sup:
            await wait_for(lambda: sup.statistics().queues["h"].succeeded == 1000)
        stats = await client.redis.info("commandstats")
        doc = await collect_status(client.redis, "cost", ["h"])
    assert totals(doc, "h")["succeeded"] == 1000

    def calls(command: str) -> int:
        raw = stats.get(f"cmdstat_{command}", "calls=0")
        return int(dict(kv.split("=") for kv in raw.split(","))["calls"])

    hincrby, evalsha = calls("hincrby"), calls("evalsha")
    # Two fields change per batch (succeeded, handler_ms); batches hold many jobs.
    assert 0 < hincrby <= 2 * evalsha
    assert hincrby < 1000 / 10, f"{hincrby} HINCRBY for 1,000 jobs"
    assert calls("xadd") == 0  # events are off by default


async def test_history_can_be_turned_off(server: Server, prefix: str) -> None:
    """``history_hours = 0``: no history hash is written."""
    app = make_app("history-off")
    config = make_config(server.url, prefix, metrics={"history_hours": 0})
    async with running(app, config) as sup, app.connect(server.url, prefix=prefix) as client:
        await client.send_many([Work("ok", i) for i in range(5)] + [Work("bad")])
        await wait_for(lambda: sup.statistics().queues["h"].dead == 1)
        assert sup.statistics().queues["h"].succeeded == 5
        assert await client.redis.execute("KEYS", f"{prefix}:*:history:*") == []


async def test_status_shows_the_rates_table_and_json(
    server: Server, prefix: str, tmp_path: Path
) -> None:
    """``status`` prints a rates table; ``status --json`` has each queue's history and
    rates."""
    app = make_app("history-cli")
    config = make_config(server.url, prefix)
    async with running(app, config) as sup, app.connect(server.url, prefix=prefix) as client:
        await client.send_many([Work("ok", i) for i in range(4)])
        await wait_for(lambda: sup.statistics().queues["h"].succeeded == 4)
        keys = PartitionKeys(prefix, "h")
        await wait_for(lambda: _has_history(client, keys))

    path = tmp_path / "config.toml"
    path.write_text(
        f'app = "tests.test_minute_history:cli_app"\n'
        f'[broker]\nurl = "{server.url}"\nprefix = "{prefix}"\n'
    )
    runner = CliRunner()
    table = await trio.to_thread.run_sync(runner.invoke, cli, ["status", str(path)])
    assert table.exit_code == 0, table.output
    assert "rates over the last 5 minutes" in table.output
    assert "ms/run" in table.output, table.output
    raw = await trio.to_thread.run_sync(runner.invoke, cli, ["status", str(path), "--json"])
    assert raw.exit_code == 0, raw.output
    doc = orjson.loads(raw.output)
    assert totals(doc, "h")["succeeded"] == 4
    assert doc["queues"]["h"]["rates"]["succeeded_per_second"] > 0


async def _has_history(client: trioqueue.Client, keys: PartitionKeys) -> bool:
    found = await client.redis.execute("KEYS", f"{keys.tag}:history:*")
    return bool(found)


cli_app = make_app("history-cli")


def test_rates_cover_four_minutes_and_the_current_one_so_far() -> None:
    """Rates divide by four full minutes plus the elapsed part of the current one; the
    mean handler time is per run (succeeded, failed and cancelled)."""
    from trioqueue._history import minutes_before, rates, summed

    now_ms = 1_000 * 60_000 + 30_000  # 30 s into minute 1000
    assert minutes_before(now_ms) == [996, 997, 998, 999, 1000]
    minutes = [summed(m, []) for m in minutes_before(now_ms)]
    minutes[-1] = summed(1000, [{b"succeeded": b"27", b"failed": b"3", "handler_ms": "60"}])
    got = rates(minutes, now_ms)
    assert got["window_seconds"] == 270.0
    assert got["succeeded_per_second"] == 0.1
    assert got["handler_ms_mean"] == 2.0
    assert minutes[0]["minute"] == "1970-01-01T16:36:00+00:00"
