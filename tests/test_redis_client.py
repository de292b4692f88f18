"""trioqueue's own Redis client against real servers: pipelining, cancellation,
timeouts, reconnection, blocking commands, pub/sub and unix sockets
(TLS: ``test_redis_server.py``, the embedded Valkey has none)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from tests.conftest import Server, find_server_binary, free_port
from trioqueue._redis import ConnectionLost, ReplyError, ReplyTimeout, open_redis


async def test_replies_reach_their_callers_when_many_tasks_share_the_connection(
    server: Server, prefix: str
) -> None:
    results: dict[int, list[int]] = {}
    async with open_redis(server.url) as redis:

        async def task(i: int) -> None:
            got = results.setdefault(i, [])
            for _ in range(50):
                got.append(int(await redis.execute("INCR", f"{prefix}:n:{i}")))

        async with trio.open_nursery() as nursery:
            for i in range(32):
                nursery.start_soon(task, i)
    assert results == {i: list(range(1, 51)) for i in range(32)}


async def test_a_cancelled_call_leaves_the_connection_in_step(server: Server, prefix: str) -> None:
    async with open_redis(server.url) as redis:
        await redis.set(f"{prefix}:a", "A")
        with trio.move_on_after(0.05) as scope:
            await redis.execute("DEBUG", "SLEEP", "0.3")  # its reply comes later
        assert scope.cancelled_caught
        # The next caller gets its own reply, not the cancelled call's +OK.
        assert await redis.get(f"{prefix}:a") == b"A"
        assert await redis.execute("ECHO", "x") == b"x"


async def test_error_replies_keep_their_code_and_the_connection(server: Server) -> None:
    async with open_redis(server.url) as redis:
        with pytest.raises(ReplyError) as info:
            await redis.execute("NOSUCHCOMMAND")
        assert info.value.code == "ERR"
        replies = await redis.pipeline([("ECHO", "a"), ("NOSUCHCOMMAND",), ("ECHO", "b")])
        assert replies[0] == b"a" and isinstance(replies[1], ReplyError) and replies[2] == b"b"
        assert await redis.execute("PING") == b"PONG"


async def test_a_blocking_command_does_not_hold_up_the_shared_connection(
    server: Server, prefix: str
) -> None:
    async with open_redis(server.url) as redis, trio.open_nursery() as nursery:
        popped: list[object] = []

        async def pop() -> None:
            popped.append(await redis.blpop([f"{prefix}:list"], timeout=5))

        nursery.start_soon(pop)
        await trio.sleep(0.05)
        with trio.fail_after(1):  # answered while BLPOP waits on its own connection
            await redis.execute("RPUSH", f"{prefix}:list", "v")
        with trio.fail_after(2):
            while not popped:
                await trio.sleep(0.01)
    assert popped == [[f"{prefix}:list".encode(), b"v"]]


async def test_a_silent_server_times_out_and_the_client_recovers(private_server: Server) -> None:
    assert private_server.proc is not None
    pid = private_server.proc.pid
    async with open_redis(private_server.url, socket_timeout=0.5) as redis:
        await redis.ping()
        os.kill(pid, signal.SIGSTOP)
        try:
            start = trio.current_time()
            with pytest.raises(ReplyTimeout):
                await redis.ping()
            assert trio.current_time() - start < 2.0
        finally:
            os.kill(pid, signal.SIGCONT)
        await redis.ping()  # a new connection


async def test_a_restarted_server_is_reconnected_to(private_server: Server, prefix: str) -> None:
    async with open_redis(private_server.url, connect_timeout=1.0) as redis:
        await redis.set(f"{prefix}:k", "v")
        private_server.kill()
        with pytest.raises(ConnectionLost):
            await redis.get(f"{prefix}:k")
        private_server.start()
        assert await redis.get(f"{prefix}:k") == b"v"  # kept in the append-only file


async def test_pubsub_delivers_published_messages(server: Server, prefix: str) -> None:
    channel = f"{prefix}:ch"
    async with open_redis(server.url) as redis, redis.subscribe([channel]) as messages:
        await redis.execute("PUBLISH", channel, "one")
        await redis.execute("PUBLISH", channel, "two")
        got = []
        with trio.fail_after(2):
            async for data in messages:
                got.append(data)
                if len(got) == 2:
                    break
    assert got == [b"one", b"two"]


async def test_database_username_and_client_name_are_applied(server: Server, prefix: str) -> None:
    user, password = f"{prefix}-u", "pw-ok"
    async with open_redis(server.url) as admin:
        await admin.execute("ACL", "SETUSER", user, "on", f">{password}", "~*", "+@all")
        try:
            url = f"redis://{user}:{password}@127.0.0.1:{server.port}/3"
            async with open_redis(url, client_name=f"{prefix}-name") as redis:
                assert await redis.execute("ACL", "WHOAMI") == user.encode()
                assert await redis.execute("CLIENT", "GETNAME") == f"{prefix}-name".encode()
                info = (await redis.execute("CLIENT", "INFO")).decode()
                assert " db=3 " in info
            bad = f"redis://{user}:wrong@127.0.0.1:{server.port}/0"
            async with open_redis(bad) as redis:
                with pytest.raises(ReplyError) as err:
                    await redis.ping()
            assert err.value.code == "WRONGPASS"
        finally:
            await admin.execute("ACL", "DELUSER", user)


async def test_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    srv = Server(find_server_binary(), free_port(), tmp_path, extra=["--unixsocket", str(sock)])
    srv.start()
    try:
        async with open_redis(f"unix://{sock}?db=2") as redis:
            await redis.set("k", "v")
            assert await redis.get("k") == b"v"
            assert " db=2 " in (await redis.execute("CLIENT", "INFO")).decode()
    finally:
        srv.stop()
