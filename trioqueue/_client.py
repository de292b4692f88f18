"""The async (Trio) client: runs the client core (``_core``) on trioqueue's Redis client."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from trioqueue import _scripts as scripts
from trioqueue._broker_errors import classify, is_broker_failure
from trioqueue._connection import Redis, connected
from trioqueue._core import _commands as cmd
from trioqueue._core import _dead, _events, _lookup, _pause, _send
from trioqueue._core._base import ClientBase, Durability
from trioqueue._deadletters import DeadLetter
from trioqueue._events import JobEvent
from trioqueue._job import Job, JobStatus
from trioqueue._redact import chainable
from trioqueue._redis import ReplyError
from trioqueue._redis._commands import entries
from trioqueue._scripts import Call

if TYPE_CHECKING:
    from trioqueue._app import App
    from trioqueue._config import Config
    from trioqueue._connect_options import ConnectOptions

__all__ = ["Client"]

T = TypeVar("T")
# How long the cleanup of a finished wait may take (its keys expire anyway).
CLEANUP_TIMEOUT = 5.0
# Events read per round trip, and how long one read blocks on the server.
EVENTS_COUNT = 500
EVENTS_BLOCK_MS = 5000


class Client(ClientBase):
    """Sends jobs to an App's queues from Trio code. Get one with ``App.connect``."""

    def __init__(
        self,
        app: App,
        redis: Redis,
        *,
        prefix: str,
        config: Config | None,
        url: str,
        durability: Durability | None = None,
    ) -> None:
        super().__init__(app, prefix=prefix, config=config, url=url, durability=durability)
        self.redis = redis

    async def send(
        self,
        msg: object,
        *,
        queue: str | None = None,
        job_id: str | None = None,
        key: str | None = None,
        delay: float | dt.timedelta | None = None,
        at: dt.datetime | None = None,
    ) -> Job:
        """Enqueue one message; return its ``Job``.

        Routed to its handler's queue unless ``queue`` is given (required for types
        with no handler on this App). ``key`` picks the partition (a stable hash, see
        ``partition_for``); on an ordered queue, jobs with the same key run one at a
        time in send order. ``delay`` (seconds or a timedelta, measured on the
        server's clock) or ``at`` (an aware datetime) schedule it for later.

        With ``job_id`` the send is idempotent: while a job with that id is queued,
        scheduled, running or its outcome is kept, sending it again enqueues nothing
        and returns a ``Job`` with ``duplicate=True``. That also makes it safe to
        retry a send whose outcome was unknown (``BrokerUnavailable``).

        Raises ``QueueFull``, ``MessageTooLarge``, ``UnknownMessageType`` or
        ``BrokerError``; on any of those nothing was enqueued, except a
        ``BrokerUnavailable`` during the call, whose outcome is unknown.
        """
        return await self._run(
            _send.send(self._core, msg, queue=queue, job_id=job_id, key=key, delay=delay, at=at)
        )

    async def send_many(
        self,
        msgs: Iterable[object],
        *,
        queue: str | None = None,
        key: Callable[[Any], str] | None = None,
    ) -> list[Job]:
        """Enqueue many messages in as few round trips as possible (one per queue,
        partition and 1,000 messages). ``key`` maps a message to its key. Jobs come
        back in the order of ``msgs``.

        A chunk is all-or-nothing: ``QueueFull`` means none of that chunk was added.
        """
        return await self._run(_send.send_many(self._core, msgs, queue=queue, key=key))

    async def partitions(self, queue: str) -> int:
        """The queue's partition count (the one stored in Redis wins; cached briefly)."""
        return await self._run(self._core.partitions(queue))

    async def send_encoded(
        self,
        queue: str,
        items: Sequence[scripts.SendItem],
        *,
        unique: bool = False,
        due: int = 0,
        partition: int = 0,
    ) -> list[Job]:
        """Enqueue already-encoded ``(job id, type name, JSON body, key)`` items on one
        partition of ``queue``.

        ``unique``: the ids were chosen by the caller, enqueue each at most once.
        ``due``: 0 = now, > 0 = epoch milliseconds, < 0 = minus a delay in milliseconds.
        """
        return await self._run(
            _send.send_encoded(
                self._core, queue, items, unique=unique, due=due, partition=partition
            )
        )

    async def cancel(self, job: Job | str, *, queue: str | None = None) -> str:
        """Cancel a job. Returns ``"removed"`` (it was still waiting and is gone),
        ``"running"`` (its worker was asked to cancel it; it settles as cancelled) or
        ``"unknown"`` (already finished, or no such job).

        A bare job id is looked for in ``queue``, or else in every queue of the App;
        a waiting job is found by scanning the partitions' streams, which is slower
        on long queues than passing the ``Job``.
        """
        return await self._run(_lookup.cancel(self._core, job, queue))

    async def result(
        self, job: Job | str, *, queue: str | None = None, timeout: float = 30.0
    ) -> Any:
        """Wait for a job's result and return it, structured into the handler's return
        type when the job's type is known to this App. ``timeout`` may be ``math.inf``.

        A bare job id is looked for in ``queue``, or else in every queue of the App;
        one that no queue knows yet is waited for in all of them.

        Raises ``JobFailed`` if it was dead-lettered, ``JobCancelled`` if cancelled,
        ``trio.TooSlowError`` after ``timeout`` seconds. Outcomes are kept for the
        queue's ``result_ttl`` (0 keeps none, and then this can only time out).
        """
        op = _lookup.result(
            self._core,
            job,
            queue,
            timeout=timeout,
            clock=trio.current_time,
            too_slow=trio.TooSlowError,
        )
        return await self._run(op)

    async def status(self, job: Job | str, *, queue: str | None = None) -> JobStatus:
        """The job's current state, attempts, timestamps and last error.

        A bare job id is looked for in ``queue``, or else in every queue of the App;
        when none knows it, ``state`` is ``"unknown"`` and ``queue`` the one given, or
        ``""``.
        """
        return await self._run(_lookup.status(self._core, job, queue))

    async def dead_letters(self, queue: str, *, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of ``queue`` (of each of its partitions)."""
        return await self._run(_dead.dead_letters(self._core, queue, count))

    async def retry_dead_letters(
        self, queue: str, ids: Sequence[str] | None = None
    ) -> tuple[int, int]:
        """Re-send dead letters (``ids``, or all) as fresh jobs with attempts reset.

        Returns (re-sent, skipped); skipped entries are not job envelopes and stay.
        """
        return await self._run(_dead.retry_dead_letters(self._core, queue, ids))

    async def purge_dead_letters(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids``, or all); returns how many were deleted."""
        return await self._run(_dead.purge_dead_letters(self._core, queue, ids))

    async def pause(self, queue: str) -> bool:
        """Pause ``queue``: workers stop fetching its jobs within one ``worker.block``
        interval while running ones finish. Sends are still accepted and delayed jobs
        still come due; they wait in the stream. The flag is kept in Redis, so it
        holds across worker restarts, until ``resume``.

        Returns False if the queue was paused already. Raises ``ValueError`` for an
        invalid queue name, ``BrokerError`` if the broker cannot be reached.
        """
        return await self._run(_pause.set_paused(self._core, queue, True))

    async def resume(self, queue: str) -> bool:
        """Resume a paused ``queue``: workers fetch its jobs again at once.

        Returns False if the queue was not paused.
        """
        return await self._run(_pause.set_paused(self._core, queue, False))

    async def events(self, queue: str, *, since: str | None = None) -> AsyncIterator[JobEvent]:
        """Every job event of ``queue`` (``[queues.NAME] events = true``), oldest first,
        for as long as the caller iterates: ``async for event in client.events(q)``.

        Without ``since``, the events from now on; with ``since=event.id`` (the cursor
        of an event seen before), the ones right after it, so a listener that
        reconnects with the last id it saw loses nothing the stream still holds (each
        partition keeps about ``events_max_length``). ``since="0"``: from the oldest
        kept. Events of one job come in the order they happened; across partitions,
        in the order of their stream ids. Stop by leaving the loop or cancelling.
        """
        pos = await self._run(_events.start(self._core, queue, since))
        while True:
            read = _events.read(
                self._core, queue, pos, count=EVENTS_COUNT, block_ms=EVENTS_BLOCK_MS
            )
            batch, pos = await self._run(read)
            for event in batch:
                yield event

    async def _run(self, op: cmd.Op[T]) -> T:
        """Drive ``op`` to its end on this client's connection."""
        steps = cmd.Steps(op)
        for command in steps:
            steps.outcome = await cmd.acapture(self._execute, command)
        return steps.result

    async def _execute(self, command: cmd.Command) -> Any:
        """Run one command; the one place client errors become trioqueue errors."""
        if isinstance(command, cmd.BestEffort):
            shielded = trio.CancelScope(shield=True)
            with shielded, trio.move_on_after(CLEANUP_TIMEOUT), suppress(Exception):
                await self._execute(command.command)
            return None
        if isinstance(command, cmd.Sleep):
            await trio.sleep(command.seconds)
            return None
        try:
            return await self._command(command)
        except Exception as exc:
            if is_broker_failure(exc):
                raise classify(exc, self._url) from chainable(exc, self._url)
            raise

    async def _command(self, command: cmd.Command) -> Any:
        match command:
            case scripts.Call():  # first: every send is one
                return await scripts.run(self.redis, command)
            case cmd.Get(key):
                return await self.redis.get(key)
            case cmd.HGet(key, field):
                return await self.redis.hget(key, field)
            case cmd.SetPx(key, value, px):
                await self.redis.set(key, value, px=px)
                return None
            case cmd.BLPop(key, timeout):
                await self.redis.blpop([key], timeout=timeout)
                return None
            case cmd.Delete(keys):
                return await self.redis.delete(list(keys))
            case cmd.XLen(key):
                return await self.redis.xlen(key)
            case cmd.XRange(key, start, end, count, reverse):
                if reverse:
                    return await self.redis.xrevrange(key, end, start, count=count)
                return await self.redis.xrange(key, start, end, count=count)
            case cmd.XDel(key, ids):
                return await self.redis.xdel(key, list(ids))
            case cmd.XRead(streams, count, block_ms):
                args: list[Any] = ["XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS"]
                args += [k for k, _ in streams] + [i for _, i in streams]
                raw = await self.redis.execute_blocking(args, block=block_ms / 1000)
                items = raw.items() if isinstance(raw, dict) else (raw or ())
                return [(_text(name), entries(got)) for name, got in items]
            case cmd.Pipeline():
                return await self._pipeline(command)
            case cmd.Replicated(call):
                parsed, waited = await scripts.run_then(
                    self.redis, call, command.wait, block=command.block
                )
                return command.reply(parsed, waited)
        raise TypeError(f"not a command: {command!r}")

    async def _pipeline(self, pipeline: cmd.Pipeline) -> list[Any]:
        commands = pipeline.commands
        if len(commands) == 1:
            return [await self._command(commands[0])]
        replies = await self._pipelined(commands)
        if any(_noscript(r) for r in replies):
            # The server lost its scripts (a restart): nothing of ours ran, and a
            # pipeline holds only reads, so sending it again is safe.
            for source in {c.script.source for c in commands if isinstance(c, Call)}:
                await self.redis.script_load(source)
            replies = await self._pipelined(commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return cmd.parsed(pipeline, replies)

    async def _pipelined(self, commands: tuple[cmd.Get | cmd.HGet | Call[Any], ...]) -> list[Any]:
        return await self.redis.pipeline(
            [
                ("GET", c.key)
                if isinstance(c, cmd.Get)
                else ("HGET", c.key, c.field)
                if isinstance(c, cmd.HGet)
                else ("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
                for c in commands
            ]
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _noscript(reply: object) -> bool:
    return isinstance(reply, ReplyError) and reply.code == "NOSCRIPT"


@asynccontextmanager
async def open_client(
    app: App,
    url: str,
    *,
    options: ConnectOptions,
    config: Config | None,
) -> AsyncIterator[Client]:
    """Connect, check the broker answers, and yield a ``Client`` (see ``App.connect``)."""
    o = options
    async with connected(
        url,
        connect_timeout=o.connect_timeout,
        socket_timeout=o.socket_timeout,
        tls_ca_file=o.tls_ca_file,
    ) as redis:
        yield Client(app, redis, prefix=o.prefix, config=config, url=url, durability=o.durability)
