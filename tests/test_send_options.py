"""Idempotent sends by job id, delayed sends (`delay=`, `at=`)."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import wait_for
from trioqueue._keys import PartitionKeys


@attrs.frozen
class Ping:
    n: int


def make_app(seen: list[tuple[int, float]]) -> trioqueue.App:
    app = trioqueue.App("opts")

    @app.handler(queue="ping")
    async def ping(msg: Ping) -> int:
        seen.append((msg.n, trio.current_time()))
        return msg.n

    return app


async def test_send_with_same_job_id_enqueues_once(config: trioqueue.Config, redis: object) -> None:
    """A second send with the same job id adds nothing while the first is kept."""
    seen: list[tuple[int, float]] = []
    app = make_app(seen)
    keys = PartitionKeys(config.broker.prefix, "ping")
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        first = await client.send(Ping(1), job_id="welcome-42")
        again = await client.send(Ping(2), job_id="welcome-42")
        assert not first.duplicate and again.duplicate
        assert again.entry_id == first.entry_id
        assert await redis.xlen(keys.stream) == 1  # type: ignore[attr-defined]
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert await client.result(first, timeout=5) == 1
            # Finished, but its result is still kept: still a duplicate.
            third = await client.send(Ping(3), job_id="welcome-42")
            assert third.duplicate
            other = await client.send(Ping(4), job_id="welcome-43")
            assert await client.result(other, timeout=5) == 4
            sup.shutdown()
    assert [n for n, _ in seen] == [1, 4]


async def test_delayed_send_runs_after_the_delay(any_config: trioqueue.Config) -> None:
    """`delay=` keeps the job in the delayed set until due, then it runs."""
    config = any_config
    seen: list[tuple[int, float]] = []
    app = make_app(seen)
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
            sent_at = trio.current_time()
            await client.send(Ping(1), delay=dt.timedelta(milliseconds=600))
            at = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=300)
            await client.send(Ping(2), at=at)
            await client.send(Ping(3))
            await wait_for(lambda: len(seen) == 3)
        sup.shutdown()
    order = [n for n, _ in seen]
    assert order == [3, 2, 1]
    ran = dict(seen)
    assert ran[1] - sent_at >= 0.55
    assert ran[2] - sent_at >= 0.25


async def test_naive_datetime_and_negative_delay_are_refused(any_config: trioqueue.Config) -> None:
    """Scheduling needs an aware datetime and a delay >= 0."""
    config = any_config
    app = make_app([])
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        with pytest.raises(ValueError, match="aware"):
            await client.send(Ping(1), at=dt.datetime.now())
        with pytest.raises(ValueError, match="delay"):
            await client.send(Ping(1), delay=-1)
        with pytest.raises(ValueError, match="not both"):
            await client.send(Ping(1), delay=1, at=dt.datetime.now(dt.UTC))
