"""The floor client: the least a Trio program must do to talk to Redis.

One socket, commands encoded by ``hiredis.pack_command``, replies parsed by
``hiredis.Reader``, and nothing else: no pool, no retries, no reply conversion. Any
number of tasks may call it at once; their commands are pipelined on the socket in
the order they were issued, and the replies are handed back in that order.

This is a measuring stick for ``bench.py`` and ``clients.py``, not a client for
production: it has no TLS, authentication or reconnection, and a failed write leaves
the connection unusable (it is marked broken).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import hiredis
import trio

Arg = str | bytes | int | float

__all__ = ["Arg", "RespClient", "RespError", "open_resp"]

# hiredis's stub types the argument as a one-element tuple; it takes any length.
_pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


class RespError(Exception):
    """An error reply from the server (``-ERR ...``)."""


class _Waiter:
    """The replies one call is waiting for."""

    __slots__ = ("abandoned", "event", "remaining", "replies")

    def __init__(self, count: int) -> None:
        self.event = trio.Event()
        self.remaining = count
        self.replies: list[Any] = []
        # Its caller was cancelled: its replies are still read, then dropped.
        self.abandoned = False


class RespClient:
    """Commands on one connection, pipelined across the tasks that call it.

    Get one with ``open_resp``. A call appends its encoded command to an output
    buffer; whichever caller finds no write under way writes the whole buffer, so
    the commands of many tasks leave in one ``send`` (the way a server is fastest
    fed). Replies are read by a caller too, not by a reader task: whichever waiting
    caller finds nobody reading reads until its own replies are in, wakes every
    other caller whose replies it parsed on the way, then hands reading on to the
    oldest caller still waiting. A lone caller so waits on the socket itself, one
    task switch less per command than a reader task would cost.

    A cancelled read takes nothing off the socket (a Trio guarantee), and the
    replies of a cancelled caller are read and dropped, so cancelling a call never
    leaves a half-read reply behind.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        # Error replies come back as RespError values (not raised inside the parser)
        # so that one failed command of a pipeline does not lose the others' replies.
        self._reader = hiredis.Reader(replyError=RespError)
        self._out = bytearray()
        self._writing = False
        self._reading = False
        self._pending: deque[_Waiter] = deque()
        self._broken: BaseException | None = None

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; raise ``RespError`` for an error reply."""
        waiter = self._issue(_pack(args), 1)
        await self._flush()
        await self._wait(waiter)
        reply = waiter.replies[0]
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send many commands in one write and return their replies, errors included
        as ``RespError`` values (not raised)."""
        if not commands:
            return []
        data = b"".join([_pack(tuple(c)) for c in commands])
        waiter = self._issue(data, len(commands))
        await self._flush()
        await self._wait(waiter)
        return waiter.replies

    def _issue(self, data: bytes, count: int) -> _Waiter:
        self._check()
        waiter = _Waiter(count)
        # Appended together, so the order of the buffer and of the waiters agree.
        self._out += data
        self._pending.append(waiter)
        return waiter

    async def _flush(self) -> None:
        if self._writing:
            # The task writing now sends this command after its current write.
            return
        self._writing = True
        try:
            # Shielded: the buffer holds other tasks' commands too, and a write cut
            # short by cancellation would leave part of a command on the socket.
            with trio.CancelScope(shield=True):
                while self._out:
                    data = bytes(self._out)
                    self._out.clear()
                    await self._stream.send_all(data)
        except BaseException as exc:
            # Part of the buffer may have left: the stream is out of step for good.
            self._fail(exc)
            raise
        finally:
            self._writing = False

    async def _wait(self, waiter: _Waiter) -> None:
        try:
            while waiter.remaining:
                self._check()
                if not self._reading:
                    await self._read_until(waiter)
                    continue
                await waiter.event.wait()
                if waiter.remaining:
                    # Woken to take over reading; a fresh event for the next wait.
                    waiter.event = trio.Event()
        except BaseException:
            if waiter.remaining:
                waiter.abandoned = True
                self._hand_over()
            raise

    async def _read_until(self, waiter: _Waiter) -> None:
        reader, pending = self._reader, self._pending
        self._reading = True
        try:
            while waiter.remaining:
                data = await self._stream.receive_some(1 << 18)
                if not data:
                    raise trio.BrokenResourceError("server closed the connection")
                # The stub says bytes; any buffer is accepted, and copying costs.
                reader.feed(data)  # type: ignore[arg-type]
                while (reply := reader.gets()) is not False:
                    first = pending[0]
                    first.replies.append(reply)
                    first.remaining -= 1
                    if not first.remaining:
                        pending.popleft()
                        first.event.set()
        except trio.Cancelled:
            raise
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            self._reading = False
            self._hand_over()

    def _hand_over(self) -> None:
        """Wake the oldest caller still waiting, to read if nobody is reading."""
        if self._reading:
            return
        for w in self._pending:
            if not w.abandoned:
                w.event.set()
                return

    def _fail(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc
        # Wake every caller: none of their replies can arrive any more.
        for w in self._pending:
            w.event.set()

    def _check(self) -> None:
        if self._broken is not None:
            raise trio.BrokenResourceError("connection is broken") from self._broken


async def _open_stream(url: str) -> trio.abc.Stream:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return await trio.open_unix_socket(parts.path)
    if parts.scheme != "redis":
        raise ValueError(f"unsupported URL {url!r}: use redis:// or unix://")
    # trio sets TCP_NODELAY on the stream, so a lone command is not held back.
    return await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 6379)


@asynccontextmanager
async def open_resp(url: str) -> AsyncIterator[RespClient]:
    """Connect to ``redis://host:port[/db]`` or ``unix:///path``; close on exit."""
    stream = await _open_stream(url)
    async with stream:
        client = RespClient(stream)
        parts = urlsplit(url)
        db = parts.path.strip("/") if parts.scheme == "redis" else ""
        if db.isdigit() and db != "0":
            await client.execute("SELECT", db)
        yield client
