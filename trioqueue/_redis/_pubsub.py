"""A subscribed connection: pushed messages, read one at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import hiredis
import trio

from trioqueue._redis._connection import Arg, pack
from trioqueue._redis._errors import ConnectionLost, ReplyError, ReplyTimeout
from trioqueue._redis._transport import Transport

__all__ = ["PubSub"]


class PubSub:
    """Messages published to the channels it subscribed to (``message`` pushes only)."""

    def __init__(self, transport: Transport, *, timeout: float | None) -> None:
        self._transport = transport
        self._reader = hiredis.Reader(replyError=ReplyError)
        # A quiet channel is checked with a PING after this long, so that a server
        # gone without a word is noticed.
        self._timeout = timeout

    async def start(self, handshake: Sequence[Sequence[Arg]], channels: Sequence[str]) -> None:
        """Set the connection up and subscribe; return once every channel is confirmed."""
        data = b"".join(pack(tuple(c)) for c in handshake) + pack(("SUBSCRIBE", *channels))
        await self._transport.send_all(data)
        for _ in handshake:
            reply = await self._next()
            if isinstance(reply, ReplyError):
                raise reply
        confirmed = 0
        while confirmed < len(channels):
            reply = await self._next()
            if isinstance(reply, ReplyError):
                raise reply
            if isinstance(reply, list) and reply and reply[0] == b"subscribe":
                confirmed += 1

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[bytes]:
        while True:
            reply = await self._next_checked()
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                yield reply[2]

    async def _next_checked(self) -> Any:
        if self._timeout is None:
            return await self._next()
        with trio.move_on_after(self._timeout):
            return await self._next()
        await self._transport.send_all(pack(("PING",)))
        with trio.move_on_after(self._timeout):
            return await self._next()
        raise ReplyTimeout(f"no reply to PING within {self._timeout}s")

    async def _next(self) -> Any:
        while (reply := self._reader.gets()) is False:
            self._reader.feed(await self._transport.receive())
        if isinstance(reply, ReplyError) and reply.code == "":
            raise ConnectionLost(str(reply))
        return reply
