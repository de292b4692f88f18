"""One connection: commands of many tasks pipelined on one transport, RESP2 replies
parsed by ``hiredis``.

A call appends its encoded command to an output buffer. With no reply owed, the
caller writes it at once; while replies are owed (a round trip is under way), commands
wait in the buffer and the task that reads those replies writes the whole buffer as
soon as they arrive, so the commands of many tasks leave in one write, one round trip
after another, as a pipeline. Replies are read by a caller too, not by a reader
task: whichever waiting caller finds nobody reading reads until its own replies are
in, wakes every caller whose replies it parsed on the way, then hands reading on to
the oldest caller still waiting. A lone caller so waits on the socket itself.

Cancellation never leaves the connection out of step: a cancelled wait takes nothing
off the socket, a cancelled caller's replies are still read (and dropped), and a
write, once begun, is finished. Timeouts are not enforced here (a cancel scope per
call costs as much as a round trip): every waiter carries its deadline and the
owner's watchdog closes a connection whose oldest waiter is overdue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import trio

from trioqueue._redis._errors import ConnectionLost, ReplyError, ReplyTimeout
from trioqueue._redis._transport import Transport

__all__ = ["Arg", "Connection", "pack"]

Arg = str | bytes | int | float

# hiredis's stub types the argument as a one-element tuple; it takes any length.
pack = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


class _Waiter:
    """The replies one call is waiting for."""

    __slots__ = ("abandoned", "deadline", "event", "remaining", "replies")

    def __init__(self, count: int, deadline: float) -> None:
        self.event = trio.Event()
        self.remaining = count
        self.replies: list[Any] = []
        self.deadline = deadline
        # Its caller was cancelled: its replies are still read, then dropped.
        self.abandoned = False


class Connection:
    """Commands on one transport; see the module docstring. ``timeout`` is the
    default time a reply may take (``None``: no limit)."""

    def __init__(self, transport: Transport, *, timeout: float | None) -> None:
        self._transport = transport
        self._timeout = timeout
        # Error replies come back as values (not raised inside the parser) so that one
        # failed command of a pipeline does not lose the others' replies.
        self._reader = hiredis.Reader(replyError=ReplyError)
        self._out = bytearray()
        self._out_replies = 0  # replies owed for the commands in ``_out``
        self._owed = 0  # replies owed for commands written
        self._writing = False
        self._reading = False
        self._pending: deque[_Waiter] = deque()
        self._broken: BaseException | None = None

    @property
    def broken(self) -> bool:
        """True once the connection failed: it must be replaced."""
        return self._broken is not None

    @property
    def idle(self) -> bool:
        """True when no call is waiting on it."""
        return not self._pending

    async def execute(self, args: Sequence[Arg], *, extra: float = 0.0) -> Any:
        """Send one command and return its reply; raise ``ReplyError`` for an error
        reply. ``extra`` adds to the timeout (a blocking command's own wait)."""
        waiter = self._issue(pack(tuple(args)), 1, extra)
        await self._flush()
        await self._wait(waiter)
        reply = waiter.replies[0]
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Sequence[Arg]], *, extra: float = 0.0) -> list[Any]:
        """Send many commands in one write; return their replies, error replies as
        ``ReplyError`` values (not raised). ``extra`` as for ``execute``."""
        if not commands:
            return []
        data = b"".join([pack(tuple(c)) for c in commands])
        waiter = self._issue(data, len(commands), extra)
        await self._flush()
        await self._wait(waiter)
        return waiter.replies

    def overdue(self, now: float) -> bool:
        """True if a reply is later than its deadline."""
        return any(w.deadline < now for w in self._pending)

    def fail(self, exc: BaseException) -> None:
        """Mark broken, close the transport and wake every caller with ``exc``."""
        if self._broken is None:
            self._broken = exc
        self._transport.close()
        for w in self._pending:
            w.event.set()

    def close(self) -> None:
        """Close now; callers still waiting get ``ConnectionLost``."""
        self.fail(ConnectionLost("connection closed"))

    def _issue(self, data: bytes, count: int, extra: float) -> _Waiter:
        self._check()
        timeout = self._timeout
        deadline = float("inf") if timeout is None else trio.current_time() + timeout + extra
        waiter = _Waiter(count, deadline)
        # Appended together, so the order of the buffer and of the waiters agree.
        self._out += data
        self._out_replies += count
        self._pending.append(waiter)
        return waiter

    async def _flush(self) -> None:
        if self._writing or self._owed:
            # The task writing now sends this command after its current write, or the
            # reader of the replies owed writes it when they arrive.
            return
        await self._write_out()

    async def _write_out(self) -> None:
        self._writing = True
        try:
            while self._out:
                data = bytes(self._out)
                self._owed += self._out_replies
                self._out_replies = 0
                self._out.clear()
                await self._transport.send_all(data)
        except BaseException as exc:
            # Part of the buffer may have left: the stream is out of step for good.
            self._failed(exc)
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
                reader.feed(await self._transport.receive())
                while (reply := reader.gets()) is not False:
                    self._owed -= 1
                    first = pending[0]
                    first.replies.append(reply)
                    first.remaining -= 1
                    if not first.remaining:
                        pending.popleft()
                        first.event.set()
                if self._out and not self._writing:
                    # What was issued during the round trip leaves now, in one write.
                    await self._write_out()
        except trio.Cancelled:
            raise
        except BaseException as exc:
            self._failed(exc)
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

    def _failed(self, exc: BaseException) -> None:
        # Closed by the watchdog (or by ``close``) first: raise why, not the
        # closed-socket error that woke this task.
        already = self._broken is not None
        self.fail(exc)
        if already:
            self._check()

    def _check(self) -> None:
        broken = self._broken
        if broken is None:
            return
        if isinstance(broken, ConnectionLost):
            raise type(broken)(*broken.args)
        raise ConnectionLost(f"connection failed: {broken!r}") from broken


def timed_out(timeout: float | None) -> ReplyTimeout:
    """The error a watchdog fails an overdue connection with."""
    return ReplyTimeout(f"no reply within {timeout}s")
