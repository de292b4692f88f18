"""A bare job id works with both clients: found in whichever queue and partition holds it.

Each test runs once with the Trio ``Client`` and once with the ``SyncClient`` (its calls
made from a worker thread), through one adapter, so both are held to the same promise.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import wait_for
from trioqueue._keys import PartitionKeys
from trioqueue._routing import partition_for


@attrs.frozen
class Alpha:
    n: int


@attrs.frozen
class Beta:
    n: int


def make_app() -> trioqueue.App:
    app = trioqueue.App("bare-ids")

    @app.handler(queue="alpha")
    async def alpha(msg: Alpha) -> int:
        return msg.n

    @app.handler(queue="beta", partitions=4)
    async def beta(msg: Beta) -> int:
        return msg.n * 10

    return app


class Either:
    """The operations under test, awaitable whichever client is behind them."""

    def __init__(self, client: trioqueue.Client | trioqueue.SyncClient) -> None:
        self.client = client

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method: Callable[..., Any] = getattr(self.client, name)
        if isinstance(self.client, trioqueue.Client):
            return await method(*args, **kwargs)
        return await trio.to_thread.run_sync(lambda: method(*args, **kwargs))

    async def send(self, msg: object, **kwargs: Any) -> trioqueue.Job:
        job: trioqueue.Job = await self._call("send", msg, **kwargs)
        return job

    async def status(self, job_id: str, **kwargs: Any) -> trioqueue.JobStatus:
        status: trioqueue.JobStatus = await self._call("status", job_id, **kwargs)
        return status

    async def cancel(self, job_id: str, **kwargs: Any) -> str:
        outcome: str = await self._call("cancel", job_id, **kwargs)
        return outcome

    async def result(self, job_id: str, **kwargs: Any) -> Any:
        return await self._call("result", job_id, **kwargs)

    @property
    def timeout_error(self) -> type[Exception]:
        return trio.TooSlowError if isinstance(self.client, trioqueue.Client) else TimeoutError


@pytest.fixture(params=["async", "sync"])
async def client(request: pytest.FixtureRequest, config: trioqueue.Config) -> AsyncIterator[Either]:
    app = make_app()
    url, prefix = config.broker.url or "", config.broker.prefix
    if request.param == "async":
        async with app.connect(url, prefix=prefix) as c:
            yield Either(c)
    else:
        sync = await trio.to_thread.run_sync(lambda: app.connect_sync(url, prefix=prefix))
        try:
            yield Either(sync)
        finally:
            sync.close()


def other_key(job_id: str, partitions: int) -> str:
    """A key that sends the job away from the partition its id hashes to."""
    home = partition_for(job_id, partitions)
    return next(k for k in (f"k{i}" for i in range(100)) if partition_for(k, partitions) != home)


async def test_bare_id_is_found_in_any_queue_and_partition(
    client: Either, config: trioqueue.Config
) -> None:
    """status, cancel and result by id alone find jobs in every queue and partition."""
    first = await client.send(Alpha(1))
    keyed = await client.send(Beta(2), key=other_key("beta-2", 4), job_id="beta-2")
    later = await client.send(Beta(3), delay=60, key="x")
    assert keyed.partition != partition_for("beta-2", 4)
    queued = await client.status(keyed.id)
    assert (queued.state, queued.queue) == ("queued", "beta")
    assert (await client.status(first.id)).queue == "alpha"
    scheduled = await client.status(later.id)
    assert (scheduled.state, scheduled.queue) == ("scheduled", "beta")
    assert scheduled.due_at is not None
    assert await client.cancel(later.id) == "removed"
    assert (await client.status(later.id)).state == "cancelled"
    sup = trioqueue.Supervisor(make_app(), config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert await client.result(keyed.id, timeout=10) == 20
        assert await client.result(first.id, timeout=10) == 1
        done = await client.status(keyed.id)
        assert (done.state, done.queue, done.attempts) == ("succeeded", "beta", 1)
        assert await client.cancel(keyed.id) == "unknown"
        sup.shutdown()


async def test_bare_id_that_no_queue_knows(client: Either) -> None:
    """An unknown id: status unknown (no queue), cancel unknown, result times out."""
    status = await client.status("never-sent")
    assert (status.state, status.queue) == ("unknown", "")
    assert await client.cancel("never-sent") == "unknown"
    with pytest.raises(client.timeout_error, match="never-sent"):
        await client.result("never-sent", timeout=0.3)
    # queue= stays a shortcut, and then names the queue looked in.
    assert (await client.status("never-sent", queue="beta")).queue == "beta"


async def test_result_by_bare_id_waits_for_a_job_not_sent_yet(
    client: Either, config: trioqueue.Config
) -> None:
    """result(id) started before the job exists returns once it ran, in any queue."""
    sup = trioqueue.Supervisor(make_app(), config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        got: list[Any] = []

        async def wait() -> None:
            got.append(await client.result("sent-later", timeout=math.inf))

        nursery.start_soon(wait)
        # Time for the lookup to find nothing, so the wait watches every queue.
        await trio.sleep(0.2)
        assert got == []
        await client.send(Beta(7), job_id="sent-later", key=other_key("sent-later", 4))
        await wait_for(lambda: got == [70])
        sup.shutdown()


async def test_cancelled_wait_deletes_its_markers(config: trioqueue.Config, redis: Any) -> None:
    """A wait cancelled by its caller still removes the keys that announce it."""
    app = make_app()
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as c:
        job = await c.send(Alpha(1))
        keys = PartitionKeys(config.broker.prefix, "alpha")
        with trio.move_on_after(0.3):
            await c.result(job.id)
        assert await redis.exists([keys.result_wait(job.id), keys.result_done(job.id)]) == 0


async def test_lookup_reloads_scripts_the_server_lost(client: Either, redis: Any) -> None:
    """A pipelined lookup after SCRIPT FLUSH (as after a restart) loads them and retries."""
    job = await client.send(Beta(5), key="z")
    await redis.script_flush()
    found = await client.status(job.id)
    assert (found.state, found.queue) == ("queued", "beta")
