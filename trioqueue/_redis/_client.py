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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from trioqueue._redis._address import Address
from trioqueue._redis._commands import Commands
from trioqueue._redis._connection import Arg, Connection, timed_out
from trioqueue._redis._errors import ConnectionLost, ReplyError
from trioqueue._redis._pubsub import PubSub
from trioqueue._redis._transport import Transport, open_transport

__all__ = ["Redis"]

# Idle connections kept for blocking commands; more are opened when needed.
IDLE_KEPT = 8


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
    ) -> None:
        self.address = address
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
        return await conn.execute(args)

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one round trip (not a transaction); their replies in
        order, error replies as ``ReplyError`` values."""
        conn = self._shared
        if conn is None or conn.broken:
            conn = await self._shared_connection()
        return await conn.pipeline(commands)

    async def execute_blocking(self, args: Sequence[Arg], *, block: float) -> Any:
        """Send a command that may wait ``block`` seconds on the server, on a
        connection of its own (returned to the pool if it stays in step)."""
        conn = self._idle_connection() or await self._connect()
        try:
            reply = await conn.execute(args, extra=block)
        except ReplyError:
            self._release(conn)
            raise
        except BaseException:
            # Cancelled or failed mid-wait: its reply may still come; do not reuse.
            self._discard(conn)
            raise
        self._release(conn)
        return reply

    @asynccontextmanager
    async def subscribe(self, channels: Sequence[str]) -> AsyncIterator[PubSub]:
        """A connection of its own subscribed to ``channels``; closed on exit."""
        with trio.fail_after(self._connect_timeout):
            transport = await self._transport()
        pubsub = PubSub(transport, timeout=self._socket_timeout)
        try:
            with trio.fail_after(self._connect_timeout):
                await pubsub.start(self.address.handshake(self._client_name), channels)
            yield pubsub
        finally:
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
        try:
            with trio.fail_after(self._connect_timeout):
                transport = await self._transport()
                conn = Connection(transport, timeout=self._socket_timeout)
                try:
                    for reply in await conn.pipeline(self.address.handshake(self._client_name)):
                        if isinstance(reply, ReplyError):
                            raise reply
                except BaseException:
                    conn.close()
                    raise
        except trio.TooSlowError:
            raise ConnectionLost(
                f"cannot connect to {self.address.where}: no answer within {self._connect_timeout}s"
            ) from None
        self._open.add(conn)
        return conn

    async def _transport(self) -> Transport:
        a = self.address
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

    def _release(self, conn: Connection) -> None:
        if conn.broken or self._closed or len(self._idle) >= IDLE_KEPT:
            self._discard(conn)
        else:
            self._idle.append(conn)

    def _discard(self, conn: Connection) -> None:
        conn.close()
        self._open.discard(conn)
