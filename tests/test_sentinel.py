"""Sentinel: ``redis+sentinel://`` URLs find the primary and follow it across failovers.

Real servers on loopback: the shared group of ``tests/sentinel_group.py`` (a primary,
a replica, three sentinels), healed before each test.
"""

from __future__ import annotations

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import make_config, wait_for
from tests.sentinel_group import SentinelGroup

pytestmark = pytest.mark.cluster


@attrs.frozen
class Note:
    n: int


def make_app(seen: list[int]) -> trioqueue.App:
    app = trioqueue.App("sentinel-tests")

    @app.handler("notes")
    async def note(msg: Note) -> int:
        seen.append(msg.n)
        return msg.n * 2

    return app


async def test_round_trip_over_a_sentinel_url(sentinel: SentinelGroup, prefix: str) -> None:
    seen: list[int] = []
    app = make_app(seen)
    config = make_config(sentinel.url, prefix)
    async with trio.open_nursery() as nursery:
        supervisor = trioqueue.Supervisor(app, config, handle_signals=False)
        await nursery.start(supervisor.run)
        async with app.connect(sentinel.url, prefix=prefix) as client:
            job = await client.send(Note(21))
            with trio.fail_after(10):
                assert await client.result(job) == 42
        supervisor.shutdown()
    assert seen == [21]
