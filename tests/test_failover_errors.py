"""Failover-time errors are ridden out, not fatal: a worker started against a replica
waits for a primary, and the sync client never sends a command twice on its own."""

from __future__ import annotations

import attrs
import pytest
import redis as redis_py
import redis.exceptions as rx
import trio

import trioqueue
from tests.conftest import Server, free_port, make_config, wait_for
from trioqueue._keys import PartitionKeys
from trioqueue._sync_redis import classify_sync


@attrs.frozen
class Ping:
    n: int


def make_app(seen: list[int]) -> trioqueue.App:
    app = trioqueue.App("failover-errors")

    @app.handler("pings")
    async def ping(msg: Ping) -> None:
        seen.append(msg.n)

    return app


@pytest.mark.cluster
async def test_worker_started_against_a_replica_waits_for_a_primary(
    private_server: Server, prefix: str
) -> None:
    admin = redis_py.Redis(port=private_server.port)
    # A replica of a primary that is not there: it refuses writes with READONLY.
    admin.replicaof("127.0.0.1", free_port())
    seen: list[int] = []
    app = make_app(seen)
    supervisor = trioqueue.Supervisor(
        app, make_config(private_server.url, prefix), handle_signals=False
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(supervisor.run)
        with trio.move_on_after(1.0) as waited:
            await supervisor.wait_started()
        assert waited.cancelled_caught, "started against a read-only replica"
        admin.replicaof("NO", "ONE")
        with trio.fail_after(10):
            await supervisor.wait_started()
        async with app.connect(private_server.url, prefix=prefix) as client:
            await client.send(Ping(1))
        await wait_for(lambda: seen == [1])
        supervisor.shutdown()


async def test_worker_rides_out_writes_refused_for_want_of_replicas(
    private_server: Server, prefix: str
) -> None:
    """``NOREPLICAS`` (``min-replicas-to-write`` while the replicas are away, as in a
    failover) stops no loop: heartbeats, fetchers and the scheduler wait it out."""
    admin = redis_py.Redis(port=private_server.port)
    seen: list[int] = []
    app = make_app(seen)
    supervisor = trioqueue.Supervisor(
        app, make_config(private_server.url, prefix), handle_signals=False
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        admin.config_set("min-replicas-to-write", 1)
        try:
            await trio.sleep(1.0)  # five heartbeat intervals, all refused
        finally:
            admin.config_set("min-replicas-to-write", 0)
        async with app.connect(private_server.url, prefix=prefix) as client:
            await client.send(Ping(2))
        await wait_for(lambda: seen == [2])
        supervisor.shutdown()


class CuttingProxy:
    """A TCP proxy to a server that, once ``armed``, lets the next ``EVALSHA`` through,
    waits for the server's reply and then cuts the client's connection instead of
    passing the reply on: the send ran, but its caller cannot know."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.armed = False
        self.cut = 0

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client, await trio.open_tcp_stream("127.0.0.1", self.port) as server:
            cutting = False

            async def up(scope: trio.CancelScope) -> None:
                nonlocal cutting
                async for data in client:
                    if self.armed and b"EVALSHA" in data:
                        self.armed, cutting = False, True
                    await server.send_all(data)
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(up, nursery.cancel_scope)
                async for data in server:
                    if cutting:  # the server ran it and answered: drop the answer
                        self.cut += 1
                        nursery.cancel_scope.cancel()
                        return
                    await client.send_all(data)


async def test_sync_client_does_not_resend_a_send_whose_outcome_is_unknown(
    server: Server, prefix: str
) -> None:
    """A redis-py client retrying on connection errors (``redis.Redis(host=...)``
    defaults to 3 retries; with ``retry=Retry(NoBackoff(), 3)`` this test fails with
    3 entries) resends a send whose reply was lost, enqueueing the job twice.
    ``SyncClient`` pins retries to 0, whatever redis-py's defaults for its URL."""
    proxy = CuttingProxy(server.port)
    stream = PartitionKeys(prefix, "pings", 0).stream
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        client = await trio.to_thread.run_sync(
            lambda: make_app([]).connect_sync(f"redis://127.0.0.1:{port}/0", prefix=prefix)
        )
        try:
            # Partition count cached: the next send is one script call.
            await trio.to_thread.run_sync(client.send, Ping(0))
            proxy.armed = True
            with pytest.raises(trioqueue.BrokerUnavailable):
                await trio.to_thread.run_sync(client.send, Ping(1))
        finally:
            client.close()
        nursery.cancel_scope.cancel()
    assert proxy.cut == 1
    assert redis_py.Redis(port=server.port).xlen(stream) == 2


def test_redis_py_refusals_during_failover_are_transient() -> None:
    """A demoted primary's READONLY and a replica's MASTERDOWN reach sync callers as
    ``BrokerUnavailable`` (try again), as they do on the Trio client."""
    for exc in (
        rx.ReadOnlyError("You can't write against a read only replica."),
        rx.ResponseError("MASTERDOWN Link with MASTER is down"),
        rx.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ):
        assert type(classify_sync(exc, None)) is trioqueue.BrokerUnavailable
