"""Job events and progress against a real broker: a listener sees every transition of
every job in order, resumes after its last id without a gap, the stream stays near
its cap; progress shows in ``status`` while the job runs and a fenced worker's write
is refused."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio
from typer.testing import CliRunner

import trioqueue
from tests.conftest import Server, make_config, running, wait_for
from trioqueue._cli import cli
from trioqueue._keys import GROUP, PartitionKeys

FAST = trioqueue.Backoff(initial=0.01, factor=1.0, max=0.01, jitter=0.0)


@attrs.frozen
class Work:
    kind: str  # ok, flaky (fails its first attempt), bad (always fails)
    n: int = 0


def make_app(name: str, **queue: Any) -> trioqueue.App:
    app = trioqueue.App(name)

    @app.handler(queue="e", retries=1, backoff=FAST, events=True, **queue)
    async def handle(msg: Work) -> None:
        attempt = trioqueue.current_job().attempt
        if msg.kind == "bad" or (msg.kind == "flaky" and attempt == 1):
            raise ValueError(f"{msg.kind} attempt {attempt}")

    return app


OK = [("sent", 1), ("started", 1), ("succeeded", 1)]
FLAKY = [("sent", 1), ("started", 1), ("failed", 1), ("retrying", 2), ("started", 2),
         ("succeeded", 2)]  # fmt: skip
BAD = [("sent", 1), ("started", 1), ("failed", 1), ("retrying", 2), ("started", 2),
       ("failed", 2), ("dead", 2)]  # fmt: skip


async def collect(
    client: trioqueue.Client, into: list[trioqueue.JobEvent], n: int, since: str | None
) -> None:
    async for event in client.events("e", since=since):
        into.append(event)
        if len(into) >= n:
            return


async def test_listener_sees_every_transition_of_every_job_in_order(
    server: Server, prefix: str
) -> None:
    """A listener started before the sends, on a queue of two partitions, sees each
    job's events in the order they happened: retries and dead letters included, with
    attempts and errors; a cancelled waiting job ends with ``cancelled``."""
    app = make_app("events", partitions=2)
    config = make_config(server.url, prefix)
    expected = {"ok": OK, "flaky": FLAKY, "bad": BAD}
    seen: list[trioqueue.JobEvent] = []
    async with (
        running(app, config),
        app.connect(server.url, prefix=prefix) as client,
        trio.open_nursery() as nursery,
    ):
        total = 2 * len(OK) + 2 * len(FLAKY) + len(BAD) + 2
        done = trio.Event()

        async def listen() -> None:
            await collect(client, seen, total, None)
            done.set()

        nursery.start_soon(listen)

        async def listening() -> bool:
            # Positioned once its first read blocks on the server.
            clients = await client.redis.execute("CLIENT", "LIST")
            return b" cmd=xread " in clients

        await wait_for(listening)
        jobs = {}
        for kind, n in [("ok", 0), ("ok", 1), ("flaky", 0), ("flaky", 1), ("bad", 0)]:
            job = await client.send(Work(kind, n), key=f"{kind}{n}")
            jobs[job.id] = kind
        later = await client.send(Work("ok", 9), delay=60)
        assert await client.cancel(later) == "removed"
        with trio.fail_after(10):
            await done.wait()
    by_job: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    for event in seen:
        by_job[event.job_id].append((event.kind, event.attempt))
        assert event.queue == "e"
        assert event.at.year >= 2024
    for job_id, kind in jobs.items():
        assert by_job[job_id] == expected[kind], kind
    assert [k for k, _ in by_job[later.id]] == ["sent", "cancelled"]
    dead = next(e for e in seen if e.kind == "dead")
    assert (dead.error_type, dead.error) == ("ValueError", "bad attempt 2")
    started = next(e for e in seen if e.kind == "started")
    assert started.worker is not None
    # Each event's id is a cursor over both partitions.
    assert all(e.id.count(",") == 1 for e in seen)


async def test_reconnecting_with_the_last_id_loses_nothing(server: Server, prefix: str) -> None:
    """Events read in two sittings, the second from the last id of the first, are
    exactly the events read in one from the start; one or several partitions."""
    for partitions in (1, 3):
        app = make_app(f"resume{partitions}", partitions=partitions)
        config = make_config(server.url, f"{prefix}{partitions}")
        async with (
            running(app, config) as sup,
            app.connect(server.url, prefix=f"{prefix}{partitions}") as client,
        ):
            await client.send_many([Work("ok", i) for i in range(10)], key=lambda m: str(m.n))
            await wait_for(lambda: sup.statistics().queues["e"].succeeded == 10)
            everything: list[trioqueue.JobEvent] = []
            with trio.fail_after(5):
                await collect(client, everything, 30, "0")
            first: list[trioqueue.JobEvent] = []
            with trio.fail_after(5):
                await collect(client, first, 13, "0")
            rest: list[trioqueue.JobEvent] = []
            with trio.fail_after(5):
                await collect(client, rest, 17, first[-1].id)
        key = [(e.partition, e.entry_id) for e in everything]
        assert [(e.partition, e.entry_id) for e in first + rest] == key
        assert sorted(e.kind for e in everything) == sorted(["sent", "started", "succeeded"] * 10)


async def test_event_stream_stays_within_its_cap(server: Server, prefix: str) -> None:
    """Sends beyond ``events_max_length`` trim the stream to about that length
    (``MAXLEN ~``: whole nodes of up to 100 entries)."""
    app = make_app("cap", events_max_length=100)
    config = make_config(server.url, prefix, queues={"e": {"events_max_length": 100}})
    async with running(app, config), app.connect(server.url, prefix=prefix) as client:
        pass  # the worker wrote the queue's events length into the meta hash
    async with app.connect(server.url, prefix=prefix, config=config) as client:
        for _ in range(10):
            await client.send_many([Work("never", i) for i in range(100)])
        length = await client.redis.xlen(PartitionKeys(prefix, "e").events)
    assert 100 <= length < 300


def test_sync_client_events_are_a_blocking_iterator(server: Server, prefix: str) -> None:
    """``SyncClient.events`` yields the same events with the same cursors."""
    app = make_app("sync-events")
    config = make_config(server.url, prefix)
    with app.connect_sync(server.url, prefix=prefix, config=config) as client:
        jobs = client.send_many([Work("never", i) for i in range(3)])
        events = list(itertools.islice(client.events("e", since="0"), 3))
        assert [(e.kind, e.job_id) for e in events] == [("sent", j.id) for j in jobs]
        again = list(itertools.islice(client.events("e", since=events[0].id), 2))
        assert again == events[1:]


async def test_progress_shows_in_status_while_the_job_runs(server: Server, prefix: str) -> None:
    """``report_progress`` values appear in ``status`` (Trio and sync clients) while the
    job runs, and as ``progress`` events; the last one stays after it finished."""
    app = trioqueue.App("progress")
    reported, release = trio.Event(), trio.Event()

    @app.handler(queue="p", events=True)
    async def handle(msg: Work) -> str:
        assert await trioqueue.report_progress(0.25)
        assert await trioqueue.report_progress({"done": 3, "of": 4})
        reported.set()
        await release.wait()
        return "ok"

    config = make_config(server.url, prefix)
    async with running(app, config), app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Work("ok"))
        with trio.fail_after(5):
            await reported.wait()
        status = await client.status(job)
        assert (status.state, status.progress) == ("active", {"done": 3, "of": 4})
        with app.connect_sync(server.url, prefix=prefix) as sync:
            bare = await trio.to_thread.run_sync(lambda: sync.status(job.id, queue="p"))
        assert bare.progress == {"done": 3, "of": 4}
        release.set()
        assert await client.result(job, timeout=5) == "ok"
        status = await client.status(job.id)
        assert (status.state, status.progress) == ("succeeded", {"done": 3, "of": 4})
        events: list[trioqueue.JobEvent] = []
        async for event in client.events("p", since="0"):
            events.append(event)
            if event.kind == "succeeded":
                break
    assert [(e.kind, e.progress) for e in events] == [
        ("sent", None),
        ("started", None),
        ("progress", 0.25),
        ("progress", {"done": 3, "of": 4}),
        ("succeeded", None),
    ]


async def test_progress_of_a_fenced_worker_is_refused(
    server: Server, prefix: str, redis: Any
) -> None:
    """Once another consumer has taken the job's entry over (as after a pause past the
    heartbeat TTL), the worker's progress write is refused: False, nothing stored."""
    app = trioqueue.App("fenced-progress")
    running_now, taken, result = trio.Event(), trio.Event(), []

    @app.handler(queue="f")
    async def handle(msg: Work) -> None:
        assert await trioqueue.report_progress(0.1)
        running_now.set()
        await taken.wait()
        result.append(await trioqueue.report_progress(0.9))

    # Slow renewals: the worker must not notice the takeover before the write.
    config = make_config(
        server.url, prefix, worker={"heartbeat_interval": 3.0, "heartbeat_ttl": 10.0}
    )
    keys = PartitionKeys(prefix, "f")
    async with running(app, config), app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Work("ok"))
        with trio.fail_after(5):
            await running_now.wait()
        await redis.xclaim(keys.stream, GROUP, "usurper", 0, [job.entry_id], justid=True)
        taken.set()
        await wait_for(lambda: result, timeout=5)
        assert result == [False]
        assert (await client.status(job)).progress == 0.1


def test_cursor_positions_cover_every_partition() -> None:
    """A cursor is one id per partition; a bare id applies to all; partitions added
    since a cursor was taken start from their oldest event; None means from now."""
    from trioqueue._events import cursor, positions

    assert positions(None, 3) is None
    assert positions("$", 2) is None
    assert positions("0", 2) == ["0-0", "0-0"]
    assert positions("5-1", 3) == ["5-1"] * 3
    assert positions(cursor(["5-1", "7-0"]), 3) == ["5-1", "7-0", "0-0"]
    assert positions("5-1,7-0,9-9", 2) == ["5-1", "7-0"]


progress_app = trioqueue.App("progress-cli")
_cli_gate = {"reported": trio.Event(), "release": trio.Event()}


@progress_app.handler(queue="pc")
async def _report_then_wait(msg: Work) -> None:
    await trioqueue.report_progress(0.5)
    _cli_gate["reported"].set()
    await _cli_gate["release"].wait()


async def test_status_job_shows_progress(server: Server, prefix: str, tmp_path: Path) -> None:
    """``trioqueue status --job ID`` prints the running job's progress (and --json has it)."""
    _cli_gate.update(reported=trio.Event(), release=trio.Event())
    config = make_config(server.url, prefix)
    path = tmp_path / "config.toml"
    path.write_text(
        f'app = "tests.test_events:progress_app"\n[broker]\nurl = "{server.url}"\n'
        f'prefix = "{prefix}"\n'
    )
    runner = CliRunner()
    async with (
        running(progress_app, config),
        progress_app.connect(server.url, prefix=prefix) as client,
    ):
        job = await client.send(Work("ok"))
        with trio.fail_after(5):
            await _cli_gate["reported"].wait()
        try:
            args = ["status", str(path), "--job", job.id]
            shown = await trio.to_thread.run_sync(runner.invoke, cli, args)
            raw = await trio.to_thread.run_sync(runner.invoke, cli, [*args, "--json"])
        finally:
            _cli_gate["release"].set()
    assert shown.exit_code == 0, shown.output
    assert "progress     0.5" in shown.output
    assert orjson.loads(raw.output)["progress"] == 0.5


async def test_resent_dead_letter_starts_again_with_sent(server: Server, prefix: str) -> None:
    """A dead letter sent back (``retry_dead_letters``) gets a fresh ``sent`` event."""
    app = make_app("dlq-events")
    config = make_config(server.url, prefix)
    async with app.connect(server.url, prefix=prefix) as client:
        async with running(app, config) as sup:
            job = await client.send(Work("bad"))
            await wait_for(lambda: sup.statistics().queues["e"].dead == 1)
        assert await client.retry_dead_letters("e") == (1, 0)
        kinds: list[str] = []
        with trio.fail_after(5):
            async for event in client.events("e", since="0"):
                kinds.append(event.kind)
                if len(kinds) == len(BAD) + 1:
                    break
    assert event.job_id == job.id
    assert kinds == [k for k, _ in BAD] + ["sent"]


async def test_ordered_queue_retries_in_place_have_their_events(
    server: Server, prefix: str
) -> None:
    """An ordered queue retries in place (no script moves the job): its ``failed``,
    ``retrying`` and second ``started`` still come, in order, without a due time."""
    app = make_app("ordered-events", ordered=True)
    config = make_config(server.url, prefix)
    async with running(app, config) as sup, app.connect(server.url, prefix=prefix) as client:
        job = await client.send(Work("flaky"), key="k")
        await wait_for(lambda: sup.statistics().queues["e"].succeeded == 1)
        seen: list[trioqueue.JobEvent] = []
        with trio.fail_after(5):
            await collect(client, seen, len(FLAKY), "0")
    assert [(e.kind, e.attempt) for e in seen] == FLAKY
    assert {e.job_id for e in seen} == {job.id}
    assert next(e for e in seen if e.kind == "retrying").due_at is None
