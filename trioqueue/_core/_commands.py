"""What the client core asks a driver to do: one value per Redis command it uses.

An operation of the core is a generator (an ``Op``): it yields a command, the driver
runs it (``Client`` with trioqueue's own client under Trio, ``SyncClient`` with
redis-py) and sends the reply back in, until the generator returns the operation's
result. A driver throws its errors, already turned into ``BrokerError``s, back in, so
an operation's ``finally`` runs; a command it yields from there should be
``BestEffort``.

Replies are as the server sends them, strings as bytes; each command's docstring names
the shape its reply has, which both drivers produce whatever their library returns. A
script call is a ``_scripts.Call``: its reply comes back parsed, and the error codes it
declares come back as trioqueue's exceptions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, Generic, TypeAlias, TypeVar

import attrs

from trioqueue._scripts import Call

T = TypeVar("T")


@attrs.frozen
class Get:
    """``GET key``; replies ``bytes | None``."""

    key: str


@attrs.frozen
class HGet:
    """``HGET key field``; replies ``bytes | None``."""

    key: str
    field: str


@attrs.frozen
class SetPx:
    """``SET key value PX px``; replies None."""

    key: str
    value: bytes
    px: int


@attrs.frozen
class BLPop:
    """``BLPOP key timeout``: wait up to ``timeout`` seconds for a push; replies None."""

    key: str
    timeout: float


@attrs.frozen
class Delete:
    """``DEL keys...``; replies how many existed."""

    keys: tuple[str, ...]


@attrs.frozen
class XLen:
    """``XLEN key``; replies an int."""

    key: str


@attrs.frozen
class XRange:
    """``XRANGE key start end [COUNT count]`` (``reverse``: ``XREVRANGE key end start``);
    replies ``[(entry id, {field: value})]``, the id as text or bytes, the rest bytes."""

    key: str
    start: str = "-"
    end: str = "+"
    count: int | None = None
    reverse: bool = False


@attrs.frozen
class XRead:
    """``XREAD COUNT count BLOCK block_ms STREAMS keys... ids...`` (``streams``: key,
    id pairs); replies ``[(stream key as text, [(entry id as text, {field: value})])]``,
    ``[]`` when nothing came within ``block_ms``."""

    streams: tuple[tuple[str, str], ...]
    count: int
    block_ms: int


@attrs.frozen
class XDel:
    """``XDEL key ids...``; replies how many were deleted."""

    key: str
    ids: tuple[str, ...]


@attrs.frozen
class Pipeline:
    """Several commands in one round trip, not as a transaction; replies their replies
    in order (a script call's parsed). Only reads: after a NOSCRIPT reply the driver
    loads the scripts and sends the whole pipeline again."""

    commands: tuple[Get | HGet | Call[Any], ...]


@attrs.frozen
class Replicated:
    """``call`` (a send), then on the same connection ``WAIT replicas timeout_ms``, or
    ``WAITAOF 1 replicas timeout_ms`` with ``local_fsync``: both count the writes of
    their own connection, so the two go together on a connection of their own (the
    wait may block it for ``timeout_ms``). Replies ``(the call's parsed reply,
    replicas that acknowledged, whether the local fsync was confirmed or None)``."""

    call: Call[Any]
    replicas: int
    timeout_ms: int
    local_fsync: bool

    @property
    def wait(self) -> tuple[str | int, ...]:
        """The wait command to send right after the call."""
        if self.local_fsync:
            return ("WAITAOF", 1, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    @property
    def block(self) -> float:
        """How long the wait may hold its connection, in seconds."""
        return self.timeout_ms / 1000

    def reply(self, parsed: Any, waited: Any) -> tuple[Any, int, bool | None]:
        """This command's reply, from the call's parsed reply and the wait's."""
        if self.local_fsync:
            local, replicas = waited
            return parsed, int(replicas), int(local) >= 1
        return parsed, int(waited), None


@attrs.frozen
class Sleep:
    """Wait ``seconds`` without talking to the broker; replies None."""

    seconds: float


@attrs.frozen
class BestEffort:
    """Run ``command`` even while the operation is being cancelled, briefly, ignoring
    any error (cleanup of keys that expire on their own anyway); replies None."""

    command: Delete


def parsed(pipeline: Pipeline, replies: list[Any]) -> list[Any]:
    """A pipeline's raw replies as its commands' replies: a script call's parsed."""
    return [
        c.parse(r) if isinstance(c, Call) else r
        for c, r in zip(pipeline.commands, replies, strict=True)
    ]


Command: TypeAlias = (
    Get
    | HGet
    | SetPx
    | BLPop
    | Delete
    | XLen
    | XRange
    | XRead
    | XDel
    | Call[Any]
    | Pipeline
    | Replicated
    | Sleep
    | BestEffort
)
Op: TypeAlias = Generator[Command, Any, T]


class Outcome:
    """What running a command gave: its reply, sent into the op, or its error, thrown
    into the op so that its ``finally`` runs."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def send(self, op: Op[Any]) -> Command:
        """Resume ``op`` with this outcome; the next command it yields."""
        return op.send(self.value) if self.error is None else op.throw(self.error)


def capture(run: Callable[[Command], Any], command: Command) -> Outcome:
    """Run ``command`` with a sync driver's ``run``."""
    try:
        return Outcome(run(command))
    except BaseException as exc:  # KeyboardInterrupt too: the op cleans up, then re-raises
        return Outcome(error=exc)


async def acapture(run: Callable[[Command], Awaitable[Any]], command: Command) -> Outcome:
    """Run ``command`` with an async driver's ``run``."""
    try:
        return Outcome(await run(command))
    except BaseException as exc:  # Cancelled too: the op cleans up, then re-raises
        return Outcome(error=exc)


class Steps(Generic[T]):
    """An op as a driver walks it: iterate for each command to run, and set ``outcome``
    to what running it gave (``capture``/``acapture``) before the next one. Once the op
    returns, ``result`` holds what it returned.

    (Lighter than the ``outcome`` library: a send runs this for every command.)
    """

    __slots__ = ("_op", "outcome", "result")

    def __init__(self, op: Op[T]) -> None:
        self._op = op
        self.outcome = Outcome()
        self.result: T

    def __iter__(self) -> Iterator[Command]:
        while True:
            try:
                command = self.outcome.send(self._op)
            except StopIteration as done:
                self.result = done.value
                return
            yield command
