"""The worker against a real server: bad input, failures, retries, capacity, shutdown."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio

import trioqueue
from tests.conftest import Server, make_config, running, wait_for
from trioqueue._keys import GROUP, PartitionKeys

FAST = trioqueue.Backoff(initial=0.01, factor=1.0, max=0.01, jitter=0.0)


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Other:
    n: int


def fields_of(entry: Any) -> dict[str, str]:
    return {k.decode(): v.decode("utf-8", "replace") for k, v in entry.field_values.items()}


async def dead_letters(redis: Any, keys: PartitionKeys) -> list[dict[str, str]]:
    return [fields_of(e) for e in await redis.xrange(keys.dead)]


async def pending_count(redis: Any, keys: PartitionKeys) -> int:
    summary: Any = await redis.xpending(keys.stream, GROUP)
    return int(summary.pending)


async def xlen(redis: Any, key: str) -> int:
    return int(await redis.xlen(key))


# ----------------------------------------------------------------------------- bad input


async def test_undecodable_entries_are_dead_lettered_and_worker_goes_on(
    server: Server, prefix: str, redis: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad JSON, wrong shape, unknown or path-like types and broken entries each go to
    the dead-letter stream with a reason; nothing is imported; good jobs still run."""
    canary = tmp_path / "imported"
    module = tmp_path / "tq_canary_mod.py"
    module.write_text(
        f"import pathlib\npathlib.Path({str(canary)!r}).touch()\n"
        f"def boom(*args):\n    pathlib.Path({str(canary)!r}).touch()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[Ping] = []
    app = trioqueue.App("bad-input")

    @app.handler(queue="q", retries=5)
    async def handle(msg: Ping) -> None:
        seen.append(msg)

    keys = PartitionKeys(prefix, "q")
    evil = f"__import__('pathlib').Path({str(canary)!r}).touch()"
    raw: list[tuple[str, dict[str, Any]]] = [
        ("bad json", {"type": "Ping", "body": "{not json"}),
        ("not utf-8", {"type": "Ping", "body": b"\xff\xfe\x00"}),
        ("wrong shape", {"type": "Ping", "body": '{"wrong": 1}'}),
        ("array body", {"type": "Ping", "body": "[1, 2]"}),
        ("wrong field type", {"type": "Ping", "body": '{"n": {"a": 1}}'}),
        ("eval", {"type": "builtins.eval", "body": orjson.dumps(evil)}),
        ("system", {"type": "os.system", "body": orjson.dumps(f"touch {canary}")}),
        ("import", {"type": "tq_canary_mod.boom", "body": "{}"}),
        ("dunder", {"type": "__import__", "body": '"tq_canary_mod"'}),
        ("no fields", {"foo": "bar"}),
        ("no body", {"type": "Ping", "id": "x"}),
    ]
    source: dict[str, str] = {}
    for name, fields in raw:
        source[(await redis.xadd(keys.stream, fields)).decode()] = name
    async with app.connect(server.url, prefix=prefix) as client:
        good = await client.send(Ping(7))

    async with running(app, make_config(server.url, prefix)):
        await wait_for(lambda: seen == [Ping(7)])
        await wait_for(lambda: _eq(xlen(redis, keys.dead), len(raw)))
        # Well after the bad entries: the worker is still consuming.
        async with app.connect(server.url, prefix=prefix) as client:
            await client.send(Ping(8))
        await wait_for(lambda: seen == [Ping(7), Ping(8)])

    dead = {source[d["source_id"]]: d for d in await dead_letters(redis, keys)}
    assert set(dead) == set(source.values())
    assert good.entry_id not in {d["source_id"] for d in dead.values()}
    for name in ("bad json", "not utf-8"):
        assert dead[name]["error_type"] == "DecodeError"
        assert "JSONDecodeError" in dead[name]["error"]
    for name in ("wrong shape", "array body", "wrong field type"):
        assert dead[name]["error_type"] == "DecodeError", name
        assert "body" in dead[name]["error"], dead[name]["error"]
    assert "body.n" in dead["wrong shape"]["error"]
    assert "body.n" in dead["wrong field type"]["error"]
    for name in ("eval", "system", "import", "dunder"):
        assert dead[name]["error_type"] == "UnknownMessageType"
        assert "no handler is registered for message type" in dead[name]["error"]
    assert dead["eval"]["type"] == "builtins.eval"
    assert dead["eval"]["body"] == orjson.dumps(evil).decode()
    for name in ("no fields", "no body"):
        assert dead[name]["error_type"] == "MalformedEnvelope"
        assert "lacks 'type' or 'body'" in dead[name]["error"]
    assert dead["no fields"]["foo"] == "bar"
    assert all(d["attempts"] == "1" and d["queue"] == "q" for d in dead.values())
    assert not canary.exists()
    assert "tq_canary_mod" not in sys.modules
    assert await xlen(redis, keys.stream) == 0
    assert await pending_count(redis, keys) == 0


async def _eq(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


# ----------------------------------------------------------------------------- failures


async def test_failed_attempts_are_retried_until_success(
    server: Server, prefix: str, redis: Any
) -> None:
    """A raising handler does not kill the worker; the job comes back with attempt + 1."""
    attempts: list[int] = []
    app = trioqueue.App("retry")

    @app.handler(queue="q", retries=3, backoff=FAST)
    async def handle(msg: Ping) -> None:
        attempts.append(trioqueue.current_job().attempt)
        if len(attempts) < 3:
            raise RuntimeError(f"flaky {len(attempts)}")

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(1))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: sup.statistics().consumers["q"].succeeded == 1)
    assert attempts == [1, 2, 3]
    assert sup.statistics().consumers["q"].retried == 2
    assert await xlen(redis, keys.dead) == 0
    assert await xlen(redis, keys.stream) == 0
    assert int(await redis.zcard(keys.delayed)) == 0


async def test_last_attempt_is_dead_lettered_with_details(
    server: Server, prefix: str, redis: Any
) -> None:
    """After retries + 1 attempts the job is dead-lettered with the error and traceback."""
    calls: list[int] = []
    app = trioqueue.App("dead")

    @app.handler(queue="q", retries=2, backoff=FAST)
    async def always_fails(msg: Ping) -> None:
        calls.append(trioqueue.current_job().attempt)
        raise ValueError(f"boom {msg.n}")

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Ping(42))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: _eq(xlen(redis, keys.dead), 1))
    assert calls == [1, 2, 3]
    [dead] = await dead_letters(redis, keys)
    assert dead["id"] == job.id
    assert dead["type"] == "Ping"
    assert orjson.loads(dead["body"]) == {"n": 42}
    assert dead["error_type"] == "ValueError"
    assert dead["error"] == "boom 42"
    assert dead["attempts"] == "3"
    assert dead["worker"] == sup.member_id
    assert dead["queue"] == "q"
    assert "always_fails" in dead["traceback"]
    assert "ValueError: boom 42" in dead["traceback"]
    assert int(dead["failed_at"]) > 0
    assert await xlen(redis, keys.stream) == 0
    assert int(await redis.zcard(keys.delayed)) == 0


async def test_retry_exception_sets_the_delay(server: Server, prefix: str, redis: Any) -> None:
    """`Retry(delay=)` brings the job back no sooner than the delay, ignoring backoff."""
    times: list[float] = []
    app = trioqueue.App("retry-delay")

    @app.handler(queue="q", retries=3, backoff=trioqueue.Backoff(initial=60.0))
    async def handle(msg: Ping) -> None:
        times.append(trio.current_time())
        if len(times) == 1:
            raise trioqueue.Retry(delay=0.4)

    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(1))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: sup.statistics().consumers["q"].succeeded == 1)
    assert len(times) == 2
    # Due times come from the server clock; allow for the two clocks' granularity.
    assert 0.35 <= times[1] - times[0] < 3.0
    assert await xlen(redis, PartitionKeys(prefix, "q").dead) == 0


async def test_retry_counts_as_an_attempt(server: Server, prefix: str, redis: Any) -> None:
    """A job that keeps asking to be retried is dead-lettered once its retries are used."""
    calls: list[int] = []
    app = trioqueue.App("retry-forever")

    @app.handler(queue="q", retries=1)
    async def handle(msg: Ping) -> None:
        calls.append(trioqueue.current_job().attempt)
        raise trioqueue.Retry(delay=0.0, reason="not yet")

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(1))
    async with running(app, make_config(server.url, prefix)):
        await wait_for(lambda: _eq(xlen(redis, keys.dead), 1))
    assert calls == [1, 2]
    [dead] = await dead_letters(redis, keys)
    assert (dead["error_type"], dead["error"], dead["attempts"]) == ("Retry", "not yet", "2")
    assert "traceback" not in dead


async def test_reject_dead_letters_at_once(server: Server, prefix: str, redis: Any) -> None:
    """`Reject` skips the remaining retries and records its reason."""
    calls: list[int] = []
    app = trioqueue.App("reject")

    @app.handler(queue="q", retries=5, backoff=FAST)
    async def handle(msg: Ping) -> None:
        calls.append(msg.n)
        raise trioqueue.Reject("invalid customer")

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(1))
    async with running(app, make_config(server.url, prefix)):
        await wait_for(lambda: _eq(xlen(redis, keys.dead), 1))
    assert calls == [1]
    [dead] = await dead_letters(redis, keys)
    assert (dead["error_type"], dead["error"], dead["attempts"]) == (
        "Reject",
        "invalid customer",
        "1",
    )
    assert int(await redis.zcard(keys.delayed)) == 0


async def test_timeout_fails_the_attempt(server: Server, prefix: str, redis: Any) -> None:
    """A handler running past `timeout` is cancelled and the attempt counts as failed."""
    app = trioqueue.App("timeout")
    attempts: list[int] = []

    @app.handler(queue="q", timeout=0.2, retries=1, backoff=FAST)
    async def slow(msg: Ping) -> None:
        attempts.append(trioqueue.current_job().attempt)
        await trio.sleep(30)

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(1))
    start = trio.current_time()
    async with running(app, make_config(server.url, prefix)):
        await wait_for(lambda: _eq(xlen(redis, keys.dead), 1))
    assert trio.current_time() - start < 3.0
    assert attempts == [1, 2]
    [dead] = await dead_letters(redis, keys)
    assert dead["error_type"] == "Timeout"
    assert dead["error"] == "handler ran longer than timeout=0.2s"
    assert dead["attempts"] == "2"


async def test_timeout_then_success(server: Server, prefix: str, redis: Any) -> None:
    """A timed-out attempt is retried like any failure and can then succeed."""
    app = trioqueue.App("timeout-retry")
    attempts: list[int] = []

    @app.handler(queue="q", timeout=0.2, retries=2, backoff=FAST)
    async def sometimes_slow(msg: Ping) -> None:
        attempts.append(trioqueue.current_job().attempt)
        if len(attempts) == 1:
            await trio.sleep(30)

    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(1))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: sup.statistics().consumers["q"].succeeded == 1)
    assert attempts == [1, 2]
    assert await xlen(redis, PartitionKeys(prefix, "q").dead) == 0


async def test_unserializable_result_fails_the_attempt(
    server: Server, prefix: str, redis: Any
) -> None:
    """A return value that cannot be stored is a failed attempt, not a crashed worker."""
    app = trioqueue.App("bad-result")
    done: list[int] = []

    @app.handler(queue="q", retries=0)
    async def returns_junk(msg: Ping) -> object:
        if msg.n == 0:
            return object()
        done.append(msg.n)
        return msg.n

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(0))
        await client.send(Ping(1))
    async with running(app, make_config(server.url, prefix)):
        await wait_for(lambda: _eq(xlen(redis, keys.dead), 1))
        await wait_for(lambda: done == [1])
    [dead] = await dead_letters(redis, keys)
    assert dead["error_type"] == "TypeError"
    assert await xlen(redis, keys.stream) == 0


# ----------------------------------------------------------------------------- capacity


async def test_fetcher_never_holds_more_than_capacity(
    server: Server, prefix: str, redis: Any
) -> None:
    """With concurrency 3, at most 3 handlers run and at most 6 entries are pending
    (finished jobs wait for their batched ack without holding a handler slot)."""
    app = trioqueue.App("capacity")
    now_running = 0
    max_running = 0
    done = 0

    @app.handler(queue="q", concurrency=3)
    async def slow(msg: Ping) -> None:
        nonlocal now_running, max_running, done
        now_running += 1
        max_running = max(max_running, now_running)
        await trio.sleep(0.02)
        now_running -= 1
        done += 1

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send_many(Ping(i) for i in range(50))
    samples: list[int] = []
    async with running(app, make_config(server.url, prefix)) as sup:
        with trio.fail_after(10):
            while done < 50:
                samples.append(await pending_count(redis, keys))
        await wait_for(lambda: _eq(xlen(redis, keys.stream), 0))
    assert max_running == 3
    assert sup.statistics().consumers["q"].max_running == 3
    assert len(samples) > 10
    assert max(samples) <= 6, samples
    assert await pending_count(redis, keys) == 0


# ----------------------------------------------------------------------------- shutdown


async def test_graceful_shutdown_drains_running_jobs(
    server: Server, prefix: str, redis: Any
) -> None:
    """Jobs running at shutdown finish and are acked; jobs not yet fetched stay queued."""
    app = trioqueue.App("drain")
    started: list[str] = []
    finished: list[str] = []

    @app.handler(queue="q", concurrency=2)
    async def slow(msg: Ping) -> None:
        started.append(trioqueue.current_job().job_id)
        await trio.sleep(0.3)
        finished.append(trioqueue.current_job().job_id)

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        jobs = await client.send_many(Ping(i) for i in range(5))
    sup = trioqueue.Supervisor(app, make_config(server.url, prefix))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(started) == 2)
        assert finished == []
        sup.shutdown()
    assert sorted(finished) == sorted(started)
    assert sup.statistics().consumers["q"].succeeded == 2
    left = [fields_of(e)["id"] for e in await redis.xrange(keys.stream)]
    assert sorted(left) == sorted(j.id for j in jobs if j.id not in started)
    assert await pending_count(redis, keys) == 0


async def test_graceful_shutdown_all_running_leaves_stream_empty(
    server: Server, prefix: str, redis: Any
) -> None:
    """When every job is running at shutdown, all complete and the stream ends empty."""
    app = trioqueue.App("drain-all")
    started: list[int] = []
    finished: list[int] = []

    @app.handler(queue="q", concurrency=8)
    async def slow(msg: Ping) -> None:
        started.append(msg.n)
        await trio.sleep(0.3)
        finished.append(msg.n)

    keys = PartitionKeys(prefix, "q")
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send_many(Ping(i) for i in range(5))
    sup = trioqueue.Supervisor(app, make_config(server.url, prefix))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(started) == 5)
        sup.shutdown()
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert await xlen(redis, keys.stream) == 0
    assert await pending_count(redis, keys) == 0


async def test_jobs_past_shutdown_grace_are_cancelled_and_left_pending(
    server: Server, prefix: str, redis: Any
) -> None:
    """Jobs still running after shutdown_grace are cancelled, stay pending, and a later
    worker runs them again."""
    app = trioqueue.App("grace")
    first_run: list[str] = []
    second_run: list[tuple[str, int]] = []
    stuck = True

    @app.handler(queue="q", retries=0)
    async def handle(msg: Ping) -> None:
        job = trioqueue.current_job()
        if stuck:
            first_run.append(job.job_id)
            await trio.sleep_forever()
        second_run.append((job.job_id, job.deliveries))

    keys = PartitionKeys(prefix, "q")
    config = make_config(server.url, prefix, worker={"shutdown_grace": 0.3})
    async with app.connect(server.url, prefix=prefix) as client:
        jobs = await client.send_many([Ping(1), Ping(2)])
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(first_run) == 2)
        stopped_at = trio.current_time()
        sup.shutdown()
    assert trio.current_time() - stopped_at < 2.0
    assert await xlen(redis, keys.stream) == 2
    assert await pending_count(redis, keys) == 2
    assert await xlen(redis, keys.dead) == 0
    assert int(await redis.zcard(keys.delayed)) == 0

    stuck = False
    async with running(app, config):
        await wait_for(lambda: len(second_run) == 2)
    assert sorted(second_run) == sorted((j.id, 2) for j in jobs)
    assert await xlen(redis, keys.stream) == 0
    assert await pending_count(redis, keys) == 0


# ----------------------------------------------------------------------------- handlers


async def test_sync_handler_runs_in_a_thread(server: Server, prefix: str, redis: Any) -> None:
    """A plain `def` handler runs off the Trio thread and still sees its job context."""
    app = trioqueue.App("sync")
    seen: list[tuple[int, str]] = []

    @app.handler(queue="q")
    def blocking(msg: Ping) -> int:
        seen.append((threading.get_ident(), trioqueue.current_job().job_id))
        return msg.n * 2

    async with app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Ping(21))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: sup.statistics().consumers["q"].succeeded == 1)
    [(thread, job_id)] = seen
    assert thread != threading.get_ident()
    assert job_id == job.id
    doc = orjson.loads(await redis.get(PartitionKeys(prefix, "q").result(job.id)))
    assert doc["result"] == 42


async def test_current_job_inside_handler(server: Server, prefix: str) -> None:
    """current_job() describes the running job; outside a handler it raises LookupError."""
    app = trioqueue.App("ctx")
    contexts: list[trioqueue.JobContext] = []

    @app.handler(queue="ctxq")
    async def handle(msg: Ping) -> None:
        contexts.append(trioqueue.current_job())

    async with app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Ping(1))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: len(contexts) == 1)
    [ctx] = contexts
    assert ctx.job_id == job.id
    assert ctx.entry_id == job.entry_id
    assert ctx.queue == "ctxq"
    assert (ctx.partition, ctx.attempt, ctx.deliveries) == (0, 1, 1)
    assert ctx.worker == sup.member_id
    with pytest.raises(LookupError, match="outside a trioqueue handler"):
        trioqueue.current_job()


@attrs.frozen
class Summary:
    total: int
    label: str


async def test_results_are_stored_for_value_returning_handlers(
    server: Server, prefix: str, redis: Any
) -> None:
    """Handlers annotated with a return type store their result with result_ttl; `-> None`
    handlers store nothing."""
    app = trioqueue.App("results")

    @app.handler(queue="sums", result_ttl=60)
    async def total(msg: Ping) -> Summary:
        return Summary(total=msg.n + 1, label="sum")

    async with app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Ping(9))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: sup.statistics().consumers["sums"].succeeded == 1)
    key = PartitionKeys(prefix, "sums").result(job.id)
    doc = orjson.loads(await redis.get(key))
    assert doc["result"] == {"total": 10, "label": "sum"}
    assert doc["state"] == "succeeded"
    assert 0 < int(await redis.pttl(key)) <= 60_000


async def test_result_ttl_zero_stores_no_outcome(server: Server, prefix: str, redis: Any) -> None:
    """`result_ttl = 0` leaves no result key behind; the default keeps the outcome."""
    app = trioqueue.App("no-results")

    @app.handler(queue="q", result_ttl=0)
    async def handle(msg: Ping) -> None:
        pass

    @app.handler(queue="kept")
    async def keep(msg: Other) -> None:
        pass

    async with app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Ping(1))
        kept = await client.send(Other(1))
    async with running(app, make_config(server.url, prefix)) as sup:
        await wait_for(lambda: sup.statistics().consumers["q"].succeeded == 1)
        await wait_for(lambda: sup.statistics().consumers["kept"].succeeded == 1)
    assert await redis.get(PartitionKeys(prefix, "q").result(job.id)) is None
    assert await redis.get(PartitionKeys(prefix, "kept").result(kept.id)) is not None


async def test_worker_restart_reuses_the_consumer_group(
    server: Server, prefix: str, redis: Any
) -> None:
    """A second worker on a queue whose group already exists starts and consumes."""
    app = trioqueue.App("restart")
    seen: list[int] = []

    @app.handler(queue="q")
    async def handle(msg: Ping) -> None:
        seen.append(msg.n)

    config = make_config(server.url, prefix)
    async with app.connect(server.url, prefix=prefix) as client:
        await client.send(Ping(1))
        async with running(app, config):
            await wait_for(lambda: seen == [1])
        await client.send(Ping(2))
        async with running(app, config):
            await wait_for(lambda: seen == [1, 2])


async def test_deleted_stream_is_recreated(server: Server, prefix: str, redis: Any) -> None:
    """If the stream and its group vanish under a running worker, it recreates them and
    consumes jobs sent afterwards."""
    app = trioqueue.App("vanish")
    seen: list[int] = []

    @app.handler(queue="q")
    async def handle(msg: Ping) -> None:
        seen.append(msg.n)

    keys = PartitionKeys(prefix, "q")
    async with (
        app.connect(server.url, prefix=prefix) as client,
        running(app, make_config(server.url, prefix)),
    ):
        await client.send(Ping(1))
        await wait_for(lambda: seen == [1])
        await redis.delete([keys.stream])
        await client.send(Ping(2))
        await wait_for(lambda: seen == [1, 2], timeout=5)


async def test_stream_key_of_wrong_type_is_reported_and_other_queues_go_on(
    server: Server, prefix: str, redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A queue whose stream key is overwritten with another type is reported by name,
    other queues keep working, and shutdown is not held up by it."""
    app = trioqueue.App("wrongtype")
    seen: list[int] = []

    @app.handler(queue="broken")
    async def broken(msg: Ping) -> None:
        pass

    @app.handler(queue="fine")
    async def fine(msg: Other) -> None:
        seen.append(msg.n)

    broken_stream = PartitionKeys(prefix, "broken").stream
    sup = trioqueue.Supervisor(app, make_config(server.url, prefix))
    async with app.connect(server.url, prefix=prefix) as client, trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        # In one transaction, so the worker sees the wrong type rather than a vanished key.
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete([broken_stream])
            pipe.set(broken_stream, "somebody else's value")
        await wait_for(lambda: "holds a non-stream value" in caplog.text)
        await client.send(Other(1))
        await wait_for(lambda: seen == [1])
        stopped_at = trio.current_time()
        sup.shutdown()
    assert trio.current_time() - stopped_at < 3.0
    assert broken_stream in caplog.text
