"""The public API used as a user would, with the types a user should see.

Checked by ``mypy --strict`` (``nox -s typecheck``), never run: pytest does not
collect it (the name does not start with ``test_``), and importing it only registers
handlers on an App; the code that would connect or call them sits in functions.
A ``type: ignore[...]`` below marks a mistake the types must catch: strict mode
warns about an ignore that is not needed, so each one is a test too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, assert_type

import attrs
import trio
from prometheus_client import CollectorRegistry

import trioqueue

app = trioqueue.App("typing")


@attrs.frozen
class SendWelcome:
    email: str


@attrs.frozen
class CountWords:
    text: str


@app.handler(queue="emails", retries=3, backoff=trioqueue.Backoff(initial=1.0, max=60.0))
async def send_welcome(msg: SendWelcome) -> None:
    job = trioqueue.current_job()
    assert_type(job, trioqueue.JobContext)
    assert_type(job.attempt, int)
    assert_type(job.fencing_token, tuple[int, int])
    assert_type(await trioqueue.report_progress(0.5), bool)
    assert_type(await trioqueue.report_progress({"step": 2, "of": 3}), bool)
    if job.attempt == 1:
        raise trioqueue.Retry(delay=2.0)
    raise trioqueue.Reject("no such address")


@app.handler(queue="words", run_in="thread", timeout=5.0)
def count_words(msg: CountWords) -> int:
    return len(msg.text.split())


@app.cron("*/5 * * * *")
def every_five_minutes() -> SendWelcome | None:
    return None


def decorated() -> None:
    """Decorating keeps the message type; the function stays callable."""
    assert_type(send_welcome, trioqueue.Handler[SendWelcome])
    assert_type(count_words, trioqueue.Handler[CountWords])
    assert_type(count_words.message_type, type[CountWords])
    assert_type(count_words.queue, str)
    count_words(CountWords("two words"))
    count_words(SendWelcome("a@example.org"))  # type: ignore[arg-type]
    assert_type(every_five_minutes(), SendWelcome | None)


async def produce(url: str) -> None:
    async with app.connect(url, prefix="tq") as client:
        assert_type(client, trioqueue.Client)
        job = await client.send(SendWelcome("a@example.org"), job_id="welcome-a", delay=5.0)
        assert_type(job, trioqueue.Job)
        assert_type(job.id, str)
        assert_type(job.queue, str)
        assert_type(job.partition, int)
        assert_type(job.duplicate, bool)
        at = dt.datetime.now(dt.UTC)
        later = await client.send(CountWords("x"), queue="words", key="doc-1", at=at)
        assert_type(later, trioqueue.Job)
        jobs = await client.send_many(
            [CountWords("a"), CountWords("b")], key=lambda msg: str(msg.text)
        )
        assert_type(jobs, list[trioqueue.Job])

        # The handler's shortcut is typed against its message type.
        assert_type(await send_welcome.send(client, SendWelcome("b@example.org")), trioqueue.Job)
        pending = send_welcome.send(client, SendWelcome("c@example.org"))
        await assert_type(pending, Coroutine[Any, Any, trioqueue.Job])
        await send_welcome.send(client, CountWords("x"))  # type: ignore[call-overload]

        status = await client.status(job)
        assert_type(status, trioqueue.JobStatus)
        assert_type(status.state, trioqueue.JobState)
        assert_type(status.attempts, int)
        assert_type(status.enqueued_at, dt.datetime | None)
        assert_type(status.error, str | None)
        assert_type(status.progress, Any)
        assert_type(await client.status("job-id", queue="emails"), trioqueue.JobStatus)
        assert_type(await client.cancel(job), str)
        assert_type(await client.partitions("emails"), int)
        with trio.fail_after(10):
            assert_type(await client.result(later), Any)
        try:
            await client.result(job, timeout=1.0)
        except trioqueue.JobFailed as exc:
            assert_type(exc.error_type, str)
            assert_type(exc.error, str)
        except trioqueue.JobCancelled as exc:
            assert_type(exc.job_id, str)

        letters = await client.dead_letters("emails", count=10)
        assert_type(letters, list[trioqueue.DeadLetter])
        assert_type(letters[0].failed_at, dt.datetime | None)
        assert_type(await client.retry_dead_letters("emails", [letters[0].id]), tuple[int, int])
        assert_type(await client.purge_dead_letters("emails"), int)
        assert_type(await client.pause("emails"), bool)
        assert_type(await client.resume("emails"), bool)
        async for event in client.events("emails", since=None):
            assert_type(event, trioqueue.JobEvent)
            assert_type(event.kind, trioqueue.EventKind)
            assert_type(event.id, str)
            assert_type(event.attempt, int | None)
            assert_type(event.at, dt.datetime)
            async for _ in client.events("emails", since=event.id):
                break
            break


def produce_sync(url: str) -> None:
    with app.connect_sync(url) as client:
        assert_type(client, trioqueue.SyncClient)
        try:
            job = client.send(SendWelcome("a@example.org"))
        except trioqueue.QueueFull as exc:
            assert_type(exc.queue, str)
            assert_type(exc.max_length, int)
            return
        except trioqueue.MessageTooLarge as exc:
            assert_type(exc.limit, int)
            return
        except trioqueue.BrokerUnavailable:
            return
        assert_type(job, trioqueue.Job)
        assert_type(send_welcome.send(client, SendWelcome("b@example.org")), trioqueue.Job)
        send_welcome.send(client, CountWords("x"))  # type: ignore[call-overload]
        assert_type(client.send_many([CountWords("a")]), list[trioqueue.Job])
        assert_type(client.status(job), trioqueue.JobStatus)
        assert_type(client.result(job, timeout=30.0), Any)
        assert_type(client.cancel(job.id, queue=job.queue), str)
        assert_type(client.partitions("words"), int)
        assert_type(client.pause("words"), bool)
        assert_type(client.resume("words"), bool)
        for event in client.events("words", since="0"):
            assert_type(event, trioqueue.JobEvent)
            assert_type(event.error, str | None)
            break


async def work(path: Path) -> None:
    try:
        config = trioqueue.load_config(path)
    except trioqueue.ConfigError as exc:
        assert_type(exc.problems, list[str])
        raise
    assert_type(config, trioqueue.Config)
    assert_type(config.broker, trioqueue.BrokerConfig)
    assert_type(config.broker.url, str | None)
    assert_type(config.worker, trioqueue.WorkerConfig)
    assert_type(config.metrics, trioqueue.MetricsConfig)
    assert_type(config.metrics.port, int | None)
    assert_type(app.settings(config), dict[str, trioqueue.QueueSettings])
    assert_type(app.queue_settings("emails", config).concurrency, int)
    supervisor = trioqueue.Supervisor(app, config, queues=["emails"])
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        stats = supervisor.statistics()
        assert_type(stats, trioqueue.SupervisorStatistics)
        assert_type(stats.queues["emails"], trioqueue.ConsumerStatistics)
        assert_type(stats.queues["emails"].succeeded, int)
        assert_type(stats.queues["emails"].cancelled, int)
        assert_type(supervisor.metrics_port, int | None)
        assert_type(supervisor.registry, CollectorRegistry)
        nursery.cancel_scope.cancel()


async def produce_replicated(config: trioqueue.Config) -> None:
    url = "redis+sentinel://s1:26379,s2:26379/mymaster?db=1&sentinel_password=pw"
    async with app.connect(url, config=config, wait_replicas=1, wait_timeout=0.5) as client:
        try:
            await client.send(SendWelcome("a@example.org"), job_id="welcome-a")
        except trioqueue.NotReplicated as exc:
            error: trioqueue.BrokerError = exc  # a BrokerError: caught by existing handlers
            assert_type(error.args, tuple[Any, ...])
            assert_type(exc.jobs, list[trioqueue.Job])
            assert_type(exc.job, trioqueue.Job)
            assert_type(exc.replicas, int)
            assert_type(exc.wanted, int)
            assert_type(exc.fsynced, bool | None)
    with app.connect_sync(url, config=config, wait_local_fsync=True) as sync:
        assert_type(sync.send(SendWelcome("b@example.org")), trioqueue.Job)
    assert_type(config.broker.wait_replicas, int)
    assert_type(config.broker.wait_timeout, float)
    assert_type(config.broker.wait_local_fsync, bool)


async def dashboard(path: Path) -> None:
    """The dashboard, run on its own and mounted (needs the ``dashboard`` extra)."""
    from starlette.applications import Starlette

    import trioqueue.dashboard

    config = trioqueue.load_config(path)
    assert_type(config.dashboard, trioqueue.DashboardConfig)
    assert_type(config.dashboard.token, str | None)
    assert_type(trioqueue.dashboard.create_app(config, app=app), Starlette)
    dash = trioqueue.dashboard.Dashboard(config, token="a-long-enough-secret", interval=2.0)
    assert_type(dash.asgi, Starlette)
    async with dash.running() as running:
        assert_type(running, trioqueue.dashboard.Dashboard)
        snapshot = running.snapshots.latest
        if snapshot is not None:
            assert_type(snapshot, trioqueue.dashboard.Snapshot)
            assert_type(snapshot.took, float)
