"""Sentinel: ``redis+sentinel://`` URLs find the primary and follow it across failovers.

Real servers on loopback: the shared group of ``tests/sentinel_group.py`` (a primary,
a replica, three sentinels), healed before each test.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import free_port, make_config, wait_for
from tests.sentinel_group import FIGURES, SentinelGroup
from trioqueue._config_load import parse_config
from trioqueue._connection import check_url
from trioqueue._redact import redact, redact_url
from trioqueue._redis import parse_sentinel_url

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
    sent again with the same job id (idempotent), until acknowledged (within 20 s)."""
    with trio.fail_after(20):
        for i in ids:
            await retrying(functools.partial(client.send, Note(i), job_id=f"n{i}"))
            sent.add(i)
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
    async with app.connect(sentinel.url, prefix=prefix, wait_replicas=1) as client:
        async with trio.open_nursery() as senders:
            senders.start_soon(send_all, client, range(n), sent)
            await wait_for(lambda: len(sent) > n // 3)
            old = sentinel.primary()
            assert await trio.to_thread.run_sync(sentinel.failover) is not old
            # The old primary becomes a replica of the new one (Sentinel would do it
            # ~10 s later): what only it had is gone. Until then the new primary has
            # no replica, and every send is NotReplicated and sent again.
            await trio.to_thread.run_sync(sentinel.heal)
        async with trio.open_nursery() as nursery:
            supervisor = trioqueue.Supervisor(app, config, handle_signals=False)
            await nursery.start(supervisor.run)
            await wait_for(lambda: set(seen) >= sent, timeout=10)
            assert sent == set(range(n))
            # Fail over under the running worker: it follows within a second or so.
            await trio.to_thread.run_sync(sentinel.failover)
            await trio.to_thread.run_sync(sentinel.heal)
            await send_all(client, range(n, n + 50), sent, pace=0)
            await wait_for(lambda: set(seen) >= sent, timeout=5)
            supervisor.shutdown()
    assert set(seen) == set(range(n + 50))


async def test_wait_replicas_confirms_sends_and_reports_a_stopped_replica(
    sentinel: SentinelGroup, prefix: str
) -> None:
    app = make_app([])
    async with app.connect(sentinel.url, prefix=prefix, wait_replicas=1, wait_timeout=0.3) as c:
        job = await c.send(Note(1))
        assert not job.duplicate
        assert len(await c.send_many([Note(2), Note(3)])) == 2
        replica = sentinel.replica()
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(trioqueue.NotReplicated) as info:
                await c.send(Note(4), job_id="maybe")
            assert (info.value.replicas, info.value.wanted) == (0, 1)
            assert info.value.job.id == "maybe"
            assert "0 of 1 replicas acknowledged" in str(info.value)
            with pytest.raises(trioqueue.NotReplicated) as many:
                await c.send_many([Note(5), Note(6)])
            assert len(many.value.jobs) == 2
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        # The job was kept by the primary all along: sending it again is a duplicate.
        assert (await c.send(Note(4), job_id="maybe")).duplicate


def test_sync_client_waits_for_replicas_too(sentinel: SentinelGroup, prefix: str) -> None:
    app = make_app([])
    with app.connect_sync(sentinel.url, prefix=prefix, wait_replicas=1, wait_timeout=0.3) as c:
        assert c.send(Note(1)).id
        replica = sentinel.replica()
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(trioqueue.NotReplicated) as info:
                c.send_many([Note(2)])
            assert info.value.replicas == 0
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)


async def test_wait_local_fsync_uses_waitaof(sentinel: SentinelGroup, prefix: str) -> None:
    app = make_app([])
    async with app.connect(
        sentinel.url, prefix=prefix, wait_replicas=1, wait_local_fsync=True
    ) as client:
        assert (await client.send(Note(1))).id
    with app.connect_sync(sentinel.url, prefix=prefix, wait_local_fsync=True) as sync:
        assert sync.send(Note(2)).id


async def retrying(fn: Callable[[], Awaitable[object]]) -> None:
    """Call ``fn`` until it does not raise ``BrokerError`` (a broker failing over);
    the caller bounds the wait."""
    while True:
        try:
            await fn()
        except trioqueue.BrokerError:
            await trio.sleep(0.05)
        else:
            return


async def test_kill_9_of_the_primary_loses_no_replica_acknowledged_send(
    sentinel: SentinelGroup, prefix: str
) -> None:
    """Jobs sent with ``wait_replicas=1`` and still queued when the primary is
    SIGKILLed all run on the promoted replica; the worker and clients follow it."""
    seen: list[int] = []
    seen_at: list[float] = []
    app = trioqueue.App("sentinel-kill")

    @app.handler("notes")
    async def note(msg: Note) -> None:
        seen.append(msg.n)
        seen_at.append(trio.current_time())

    config = make_config(sentinel.url, prefix)
    n = 200
    async with trio.open_nursery() as nursery:
        supervisor = trioqueue.Supervisor(app, config, handle_signals=False)
        await nursery.start(supervisor.run)
        async with app.connect(sentinel.url, prefix=prefix, wait_replicas=1) as client:
            await client.pause("notes")
            await client.send_many([Note(i) for i in range(n)])
        async with app.connect(sentinel.url, prefix=prefix) as client:  # no waiting
            killed_at = trio.current_time()
            sentinel.primary().kill()
            with trio.fail_after(15):
                await retrying(lambda: client.send(Note(n), job_id="after-kill"))
                failed_over = trio.current_time() - killed_at
                await retrying(lambda: client.resume("notes"))
            await wait_for(lambda: len(set(seen)) == n + 1, timeout=15)
        supervisor.shutdown()
    assert set(seen) == set(range(n + 1))
    first = min(seen_at) - killed_at
    FIGURES["sentinel kill -9: primary to first job processed again"] = f"{first:.2f}s"
    FIGURES["sentinel kill -9: first send accepted again"] = f"{failed_over:.2f}s"
    assert first < 10


async def test_connect_takes_broker_settings_from_config_and_kwargs_override(
    sentinel: SentinelGroup, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'app = "tests:app"\n[broker]\nurl = "{sentinel.url}"\nprefix = "{prefix}"\n'
        "wait_replicas = 1\nwait_timeout = 0.3\nconnect_timeout = 2.0\n"
    )
    config = trioqueue.load_config(path)
    app = make_app([])
    replica = sentinel.replica()
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        async with app.connect(sentinel.url, config=config) as client:
            assert client.prefix == prefix
            with pytest.raises(trioqueue.NotReplicated):
                await client.send(Note(1))
        async with app.connect(sentinel.url, config=config, wait_replicas=0) as client:
            await client.send(Note(2))
        with (
            app.connect_sync(sentinel.url, config=config) as sync,
            pytest.raises(trioqueue.NotReplicated),
        ):
            sync.send(Note(3))
        with app.connect_sync(sentinel.url, config=config, wait_replicas=0) as sync:
            sync.send(Note(4))
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)


def test_sentinel_urls_carry_data_node_and_sentinel_credentials_apart() -> None:
    t = parse_sentinel_url(
        "rediss+sentinel://app:s%40cret@10.0.0.1,10.0.0.2:26380,[::1]:5/orders"
        "?db=3&sentinel_username=watch&sentinel_password=pw"
    )
    assert t.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 5))
    assert t.service == "orders"
    assert (t.node.username, t.node.password, t.node.db, t.node.tls) == ("app", "s@cret", 3, True)
    assert (t.sentinel.username, t.sentinel.password, t.sentinel.tls) == ("watch", "pw", True)
    for bad in ("redis+sentinel://h:1", "redis+sentinel:///svc", "redis+sentinel://h:x/svc",
                "redis+sentinel://h/svc?db=two"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)
    with pytest.raises(trioqueue.BrokerError, match="invalid broker URL"):
        check_url("redis+sentinel://h:1/")


def test_config_accepts_sentinel_urls_and_checks_the_wait_keys() -> None:
    ok = parse_config({"app": "m:a", "broker": {"url": "redis+sentinel://h/svc"}})
    assert ok.broker.url == "redis+sentinel://h/svc"
    with pytest.raises(trioqueue.ConfigError) as info:
        parse_config({"app": "m:a", "broker": {"wait_replicas": -1, "wait_timeout": 60.0}})
    assert info.value.problems == [
        "broker.wait_replicas: expected a number >= 0, got -1",
        "broker.wait_timeout: must be shorter than broker.socket_timeout (30.0), got 60.0",
    ]


async def test_no_primary_is_a_transient_broker_unavailable(prefix: str) -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(trioqueue.BrokerUnavailable, match="no primary found"):
        async with make_app([]).connect(url, prefix=prefix, connect_timeout=0.5):
            pass
    with pytest.raises(trioqueue.BrokerUnavailable, match="no primary found for service"):
        make_app([]).connect_sync(url, prefix=prefix, connect_timeout=0.5)


def test_sentinel_urls_are_logged_without_either_password() -> None:
    url = "redis+sentinel://app:nodepw@a:1,b:2/svc?db=1&sentinel_password=sentpw"
    shown = redact_url(url)
    assert shown == "redis+sentinel://app:***@a:1,b:2/svc?db=1&sentinel_password=***"
    assert redact("refused: nodepw / sentpw", url) == "refused: *** / ***"


async def test_remote_cancel_reaches_a_worker_after_a_failover(
    sentinel: SentinelGroup, prefix: str
) -> None:
    """A cancel sent to the new primary reaches a job running since before the
    failover (by pub/sub, whose subscription moves with the connections, or by the
    renewal's check of the cancel marker), not ~10 s later when the old primary is
    demoted."""
    started, cancelled = trio.Event(), trio.Event()
    app = trioqueue.App("sentinel-cancel")

    @app.handler("notes")
    async def note(msg: Note) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    config = make_config(sentinel.url, prefix)
    async with trio.open_nursery() as nursery:
        supervisor = trioqueue.Supervisor(app, config, handle_signals=False)
        await nursery.start(supervisor.run)
        async with app.connect(sentinel.url, prefix=prefix) as client:
            job = await client.send(Note(1))
            with trio.fail_after(5):
                await started.wait()
            await trio.to_thread.run_sync(sentinel.failover)
            with trio.fail_after(5):
                while await client.cancel(job) != "running":
                    await trio.sleep(0.1)
                await cancelled.wait()
        supervisor.shutdown()


async def test_wrong_sentinel_password_is_an_auth_error(
    sentinel: SentinelGroup, prefix: str
) -> None:
    url = sentinel.url.replace("sentinel_password=", "sentinel_password=wrong")
    with pytest.raises(trioqueue.BrokerAuthError, match="sentinel credentials") as info:
        async with make_app([]).connect(url, prefix=prefix):
            pass
    assert "wrong" not in str(info.value)
    with pytest.raises(trioqueue.BrokerAuthError):
        make_app([]).connect_sync(url, prefix=prefix)
