"""``Redis``: trioqueue's client for one server.

One shared connection carries every command that returns at once, pipelined across
the tasks that call it; commands that wait on the server (``XREADGROUP BLOCK``,
``BLPOP``) each take a connection of their own from a small idle pool, so they never
hold up the shared one. Broken connections are replaced on the next call. A
watchdog task, in the nursery ``open_redis`` owns (``_open.py``), closes any connection whose reply
is overdue (``socket_timeout``, plus a blocking command's own wait), which wakes its
callers with ``ReplyTimeout``.

Nothing is retried here: whether a command whose connection was lost ran is
unknown, and only the caller knows whether running it twice is safe.

Failover: with a ``resolver`` (Sentinel, ``_sentinel.py``) every new connection asks it
where the primary is and checks with ``ROLE`` that it is one. A ``READONLY`` reply (a
primary demoted under us) retires the connection it came on: calls already on it
finish, the next call opens a new one (asking the resolver again).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

from trioqueue._redis._address import Address
from trioqueue._redis._commands import Commands
from trioqueue._redis._connection import Arg, Connection, timed_out
from trioqueue._redis._errors import ConnectionLost, ReplyError
from trioqueue._redis._pubsub import PubSub
from trioqueue._redis._sentinel import check_role
from trioqueue._redis._transport import Transport, open_transport

__all__ = ["Redis"]

# Idle connections kept for blocking commands; more are opened when needed.
IDLE_KEPT = 8


class Resolver(Protocol):
    """Where the primary is now (Sentinel): asked for every new connection."""

    async def primary(self) -> Address:
        """The address to connect to."""
        ...


class Redis(Commands):
    """Commands on one server; get one with ``open_redis`` (``_open.py``)."""

    def __init__(
        self,
        address: Address,
        *,
        connect_timeout: float,
        socket_timeout: float | None,
        tls_ca_file: str | None,
        client_name: str | None,
        resolver: Resolver | None = None,
    ) -> None:
        self.address = address
        self._resolver = resolver
        # Connections that answered READONLY: closed once their callers are done.
        self._retired: set[Connection] = set()
        self._subscriptions: set[Transport] = set()
        self._connect_timeout = connect_timeout
        self._socket_timeout = socket_timeout
        self._tls = address.tls_context(tls_ca_file)
        self._client_name = client_name
        self._shared: Connection | None = None
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._connecting = trio.Lock()
        self._closed = False

    async def execute(self, *args: Arg) -> Any:
        """Send one command on the shared connection; return its reply (raise
        ``ReplyError`` for an error reply, ``ConnectionLost`` without one)."""
        conn = self._shared
        if conn is None or conn.broken:
            conn = await self._shared_connection()
        try:
            return await conn.execute(args)
        except ReplyError as exc:
            if exc.code == "READONLY":
                self._retire(conn)
            raise

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one round trip (not a transaction); their replies in
        order, error replies as ``ReplyError`` values."""
        conn = self._shared
        if conn is None or conn.broken:
            conn = await self._shared_connection()
        return self._checked(conn, await conn.pipeline(commands))

    async def execute_blocking(self, args: Sequence[Arg], *, block: float) -> Any:
        """Send a command that may wait ``block`` seconds on the server, on a
        connection of its own (returned to the pool if it stays in step)."""
        conn = self._idle_connection() or await self._connect()
        try:
            reply = await conn.execute(args, extra=block)
        except ReplyError as exc:
            if exc.code == "READONLY":
                self._retired.add(conn)
            self._release(conn)
            raise
        except BaseException:
            # Cancelled or failed mid-wait: its reply may still come; do not reuse.
            self._discard(conn)
            raise
        self._release(conn)
        return reply

    async def pipeline_blocking(
        self, commands: Sequence[Sequence[Arg]], *, block: float
    ) -> list[Any]:
        """Several commands in one round trip on a connection of their own, which may
        wait ``block`` seconds on the server (e.g. a script and then ``WAIT``, which
        counts the writes of its own connection); replies as ``pipeline``'s."""
        conn = self._idle_connection() or await self._connect()
        try:
            replies = await conn.pipeline(commands, extra=block)
        except BaseException:
            self._discard(conn)
            raise
        self._checked(conn, replies)
        self._release(conn)
        return replies

    @asynccontextmanager
    async def subscribe(self, channels: Sequence[str]) -> AsyncIterator[PubSub]:
        """A connection of its own subscribed to ``channels``; closed on exit."""
        address = await self._target()
        with trio.fail_after(self._connect_timeout):
            transport = await self._transport(address)
        pubsub = PubSub(transport, timeout=self._socket_timeout)
        self._subscriptions.add(transport)
        try:
            with trio.fail_after(self._connect_timeout):
                await pubsub.start(address.handshake(self._client_name), channels)
            yield pubsub
        finally:
            self._subscriptions.discard(transport)
            transport.close()

    def retire_all(self) -> None:
        """The primary moved: let calls under way finish, open new connections for
        the next ones (asking the resolver again). Subscriptions are closed: their
        owners subscribe again, on the new primary (a message published there would
        never reach the old one)."""
        for conn in list(self._open):
            self._retire(conn)
        for transport in list(self._subscriptions):
            transport.close()

    def close(self) -> None:
        """Close every connection; calls still waiting get ``ConnectionLost``."""
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
        self._shared = None

    async def watch(self) -> None:
        """Close connections whose replies are overdue, until cancelled."""
        timeout = self._socket_timeout
        if timeout is None:
            await trio.sleep_forever()
        assert timeout is not None
        interval = max(0.05, min(1.0, timeout / 4))
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            self._sweep()
            for conn in list(self._open):
                if conn.broken:
                    self._open.discard(conn)
                elif conn.overdue(now):
                    conn.fail(timed_out(timeout))
                    self._open.discard(conn)

    async def _shared_connection(self) -> Connection:
        async with self._connecting:
            conn = self._shared
            if conn is None or conn.broken:
                self._shared = None
                conn = self._shared = await self._connect()
        return conn

    async def _connect(self) -> Connection:
        if self._closed:
            raise ConnectionLost("client closed")
        self._sweep()
        address = await self._target()
        handshake = address.handshake(self._client_name)
        if self._resolver is not None:
            handshake.append(["ROLE"])
        try:
            with trio.fail_after(self._connect_timeout):
                transport = await self._transport(address)
                conn = Connection(transport, timeout=self._socket_timeout)
                try:
                    replies = await conn.pipeline(handshake)
                    for reply in replies:
                        if isinstance(reply, ReplyError):
                            raise reply
                    if self._resolver is not None:
                        check_role(address, replies[-1])
                except BaseException:
                    conn.close()
                    raise
        except trio.TooSlowError:
            raise ConnectionLost(
                f"cannot connect to {address.where}: no answer within {self._connect_timeout}s"
            ) from None
        self._open.add(conn)
        return conn

    async def _target(self) -> Address:
        if self._resolver is None:
            return self.address
        self.address = await self._resolver.primary()
        return self.address

    async def _transport(self, a: Address) -> Transport:
        try:
            return await open_transport(host=a.host, port=a.port, path=a.path, tls=self._tls)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {a.where}: {exc}") from exc

    def _idle_connection(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.broken:
                return conn
            self._discard(conn)
        return None

    def _checked(self, conn: Connection, replies: list[Any]) -> list[Any]:
        for reply in replies:
            if type(reply) is ReplyError and reply.code == "READONLY":
                self._retire(conn)
                break
        return replies

    def _retire(self, conn: Connection) -> None:
        """Stop handing ``conn`` out (its server is a replica now); close it once idle."""
        if conn is self._shared:
            self._shared = None
        self._retired.add(conn)
        self._sweep()

    def _sweep(self) -> None:
        for conn in list(self._retired):
            if conn.idle or conn.broken:
                self._retired.discard(conn)
                if conn in self._idle:
                    self._idle.remove(conn)
                self._discard(conn)

    def _release(self, conn: Connection) -> None:
        if conn in self._retired:
            self._sweep()
            return
        if conn.broken or self._closed or len(self._idle) >= IDLE_KEPT:
            self._discard(conn)
        else:
            self._idle.append(conn)

    def _discard(self, conn: Connection) -> None:
        conn.close()
        self._open.discard(conn)
