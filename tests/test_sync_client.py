"""The redis-py client interoperates with the Trio worker: same format, same scripts."""

from __future__ import annotations

import time

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import running


@attrs.frozen
class Square:
    n: int


@attrs.frozen
class Never:
    n: int


def make_app(seen: list[int]) -> trioqueue.App:
    app = trioqueue.App("sync")

    @app.handler(queue="math")
    async def square(msg: Square) -> int:
        seen.append(msg.n)
        if msg.n < 0:
            raise trioqueue.Reject("negative")
        return msg.n * msg.n

    @app.handler(queue="never")
    async def never(msg: Never) -> None:
        seen.append(msg.n)

    return app


async def test_sync_client_sends_and_reads_results_from_async_worker(
    config: trioqueue.Config,
) -> None:
    """send, send_many, result, idempotent send and cancel through redis-py."""
    seen: list[int] = []
    app = make_app(seen)
    url, prefix = config.broker.url or "", config.broker.prefix
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)

        def producer() -> tuple[int, list[int], bool, str]:
            with app.connect_sync(url, prefix=prefix) as client:
                one = client.result(client.send(Square(3)), timeout=10)
                many = [
                    client.result(j, timeout=10) for j in client.send_many([Square(1), Square(2)])
                ]
                first = client.send(Square(5), job_id="sq-5")
                dup = client.send(Square(5), job_id="sq-5").duplicate
                assert client.result(first, timeout=10) == 25
                bad = client.send(Square(-1))
                with pytest.raises(trioqueue.JobFailed, match="negative"):
                    client.result(bad, timeout=10)
                later = client.send(Square(7), delay=60)
                state = client.cancel(later)
                with pytest.raises(trioqueue.JobCancelled):
                    client.result(later, timeout=1)
                return one, many, dup, state

        one, many, dup, state = await trio.to_thread.run_sync(producer)
        sup.shutdown()
    assert one == 9 and many == [1, 4] and dup is True and state == "removed"
    assert sorted(seen) == [-1, 1, 2, 3, 5]


def test_sync_client_errors(config: trioqueue.Config) -> None:
    """Unknown types, unreachable brokers and timeouts give clear errors."""
    app = make_app([])
    with pytest.raises(trioqueue.BrokerUnavailable):
        app.connect_sync("redis://127.0.0.1:1/0", connect_timeout=1)
    with app.connect_sync(config.broker.url or "", prefix=config.broker.prefix) as client:
        with pytest.raises(trioqueue.UnknownMessageType):
            client.send(object())
        job = client.send(Never(1))
        with pytest.raises(TimeoutError):
            client.result(job, timeout=0.2)


async def test_handler_send_shortcut_with_both_clients(config: trioqueue.Config) -> None:
    """`handler.send(client, msg)` sends to the handler's queue, async and sync."""
    seen: list[int] = []
    app = make_app(seen)
    square = app.handlers["Square"]
    url, prefix = config.broker.url or "", config.broker.prefix
    async with app.connect(url, prefix=prefix) as client:
        job = await square.send(client, Square(4), job_id="sq-4")
        assert job.queue == "math" and job.id == "sq-4"

        def sync_send() -> trioqueue.Job:
            with app.connect_sync(url, prefix=prefix) as sync:
                return square.send(sync, Square(6), delay=0)

        other = await trio.to_thread.run_sync(sync_send)
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert await client.result(job, timeout=10) == 16
            assert await client.result(other, timeout=10) == 36
            sup.shutdown()


async def test_sync_client_lists_retries_and_purges_dead_letters(
    config: trioqueue.Config,
) -> None:
    """The dead-letter calls of the Trio client, through redis-py."""
    seen: list[int] = []
    app = make_app(seen)
    url, prefix = config.broker.url or "", config.broker.prefix

    def rejected(client: trioqueue.SyncClient, n: int) -> trioqueue.Job:
        job = client.send(Square(n))
        with pytest.raises(trioqueue.JobFailed, match="negative"):
            client.result(job, timeout=10)
        return job

    def operator() -> tuple[list[str], list[str], tuple[int, int], int, list[str]]:
        with app.connect_sync(url, prefix=prefix) as client:
            jobs = [rejected(client, n).id for n in (-1, -2, -3)]
            letters = client.dead_letters("math")
            ids = [letter.job_id for letter in letters]
            # One re-sent (rejected again, so dead again), one purged by id.
            again = client.retry_dead_letters("math", [letters[0].id])
            deadline = time.monotonic() + 10
            while len(client.dead_letters("math")) < 3:  # it died once more
                assert time.monotonic() < deadline, "the re-sent job never died again"
                time.sleep(0.02)
            purged = client.purge_dead_letters("math", [letters[1].id])
            left = [letter.job_id for letter in client.dead_letters("math")]
            return jobs, ids, again, purged, left

    async with running(app, config):
        jobs, ids, again, purged, left = await trio.to_thread.run_sync(operator)
    assert ids == jobs
    assert again == (1, 0) and purged == 1
    assert sorted(left) == sorted([jobs[0], jobs[2]])
    assert sorted(seen) == [-3, -2, -1, -1]
