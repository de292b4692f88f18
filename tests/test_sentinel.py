"""Sentinel: ``redis+sentinel://`` URLs find the primary and follow it across failovers.

Real servers on loopback: the shared group of ``tests/sentinel_group.py`` (a primary,
a replica, three sentinels), healed before each test.
"""

from __future__ import annotations

import contextlib

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


async def send_all(
    client: trioqueue.Client, ids: range, sent: set[int], *, pace: float = 0.002
) -> None:
    """Send ``Note(i)`` as job ``n<i>`` for every i; a send whose outcome is unknown is
    sent again with the same job id (idempotent), until acknowledged."""
    for i in ids:
        while True:
            try:
                await client.send(Note(i), job_id=f"n{i}")
            except trioqueue.BrokerError:
                await trio.sleep(0.05)
                continue
            sent.add(i)
            break
        await trio.sleep(pace)


async def test_workers_and_clients_follow_a_sentinel_failover(
    sentinel: SentinelGroup, prefix: str
) -> None:
    """Sends acknowledged across ``SENTINEL FAILOVER`` survive the old primary's
    demotion (it keeps accepting writes for ~10 s, which it then discards), and a
    running worker moves to the new primary at once."""
    seen: list[int] = []
    app = make_app(seen)
    config = make_config(sentinel.url, prefix)
    sent: set[int] = set()
    n = 400
    async with app.connect(sentinel.url, prefix=prefix) as client:
        async with trio.open_nursery() as senders:
            senders.start_soon(send_all, client, range(n), sent)
            await wait_for(lambda: len(sent) > n // 3)
            old = sentinel.primary()
            assert await trio.to_thread.run_sync(sentinel.failover) is not old
        # The old primary becomes a replica of the new one: what only it had is gone.
        await trio.to_thread.run_sync(sentinel.heal)
        async with trio.open_nursery() as nursery:
            supervisor = trioqueue.Supervisor(app, config, handle_signals=False)
            await nursery.start(supervisor.run)
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: set(seen) >= sent, timeout=5)
            print("LOST", sorted(sent - set(seen)))
            assert sent == set(range(n))
            # Fail over under the running worker: it follows within a second or so.
            await trio.to_thread.run_sync(sentinel.failover)
            await send_all(client, range(n, n + 50), sent, pace=0)
            await wait_for(lambda: set(seen) >= sent, timeout=5)
            supervisor.shutdown()
    assert set(seen) == set(range(n + 50))
