"""The synchronous client (redis-py) for code that is not async: Django, Flask, scripts.

It runs the very same client core (``_core``) as the Trio client, so it sends the same
entries, runs the same scripts and raises the same errors.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import redis as redis_py
import redis.exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from trioqueue import _scripts as scripts
from trioqueue._connection import check_url
from trioqueue._core import _commands as cmd
from trioqueue._core import _dead, _events, _lookup, _pause, _send
from trioqueue._core._base import ClientBase, Durability
from trioqueue._deadletters import DeadLetter
from trioqueue._errors import BrokerError
from trioqueue._events import JobEvent
from trioqueue._job import Job, JobStatus
from trioqueue._redact import chainable, redact, redact_url
from trioqueue._redis import is_sentinel_url, parse_sentinel_url
from trioqueue._scripts import Call
from trioqueue._sync_redis import SyncRedis, classify_sync, run_sync, run_then_sync, sync_redis

if TYPE_CHECKING:
    from trioqueue._app import App
    from trioqueue._config import Config

__all__ = ["SyncClient"]

T = TypeVar("T")


class SyncClient(ClientBase):
    """Sends jobs from synchronous code. Get one with ``App.connect_sync``; use it as
    a context manager (or call ``close``). Safe to share between threads.

    redis-py's automatic retries are off: a send whose connection failed may have
    been applied, so it raises ``BrokerUnavailable`` instead of being sent again
    (send it again with the same ``job_id`` to retry it safely). ``redis+sentinel://``
    URLs go through ``redis.sentinel.Sentinel``, which asks again for the primary
    whenever a connection is (re)opened or answers ``READONLY``.
    """

    def __init__(
        self,
        app: App,
        url: str,
        *,
        prefix: str = "tq",
        config: Config | None = None,
        connect_timeout: float = 5.0,
        socket_timeout: float = 30.0,
        tls_ca_file: str | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        wait_local_fsync: bool = False,
    ) -> None:
        durability = Durability(wait_replicas, wait_timeout, wait_local_fsync)
        super().__init__(app, prefix=prefix, config=config, url=url, durability=durability)
        check_url(url)
        # An events read blocks on the server: well within the socket timeout.
        self._events_block_ms = max(1, min(5000, int(socket_timeout * 500)))
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            "health_check_interval": 30,
            # No blind resends: a command whose connection failed may have run.
            "retry": Retry(NoBackoff(), 0),
        }
        if url.startswith(("rediss://", "rediss+cluster://", "rediss+sentinel://")) and tls_ca_file:
            kwargs["ssl_ca_certs"] = tls_ca_file
        try:
            if is_sentinel_url(url):
                self.redis: SyncRedis = _sentinel_client(url, kwargs)
            else:
                self.redis = sync_redis(url, **kwargs)
        except (ValueError, TypeError) as exc:
            raise BrokerError(
                f"invalid broker URL {redact_url(url)}: {redact(str(exc), url)}"
            ) from chainable(exc, url)
        try:
            self.redis.ping()
        except rx.RedisError as exc:
            raise classify_sync(exc, url) from chainable(exc, url)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self.redis.close()

    def send(
        self,
        msg: object,
        *,
        queue: str | None = None,
        job_id: str | None = None,
        key: str | None = None,
        delay: float | dt.timedelta | None = None,
        at: dt.datetime | None = None,
    ) -> Job:
        """Enqueue one message; see ``Client.send`` (same arguments and errors)."""
        return self._run(
            _send.send(self._core, msg, queue=queue, job_id=job_id, key=key, delay=delay, at=at)
        )

    def send_many(
        self,
        msgs: Iterable[object],
        *,
        queue: str | None = None,
        key: Callable[[Any], str] | None = None,
    ) -> list[Job]:
        """Enqueue many messages in as few round trips as possible; see ``Client.send_many``."""
        return self._run(_send.send_many(self._core, msgs, queue=queue, key=key))

    def partitions(self, queue: str) -> int:
        """The queue's partition count (the one stored in Redis wins; cached briefly)."""
        return self._run(self._core.partitions(queue))

    def send_encoded(
        self,
        queue: str,
        items: Sequence[scripts.SendItem],
        *,
        unique: bool = False,
        due: int = 0,
        partition: int = 0,
    ) -> list[Job]:
        """Enqueue already-encoded ``(job id, type name, JSON body, key)`` items."""
        return self._run(
            _send.send_encoded(
                self._core, queue, items, unique=unique, due=due, partition=partition
            )
        )

    def cancel(self, job: Job | str, *, queue: str | None = None) -> str:
        """Cancel a job; see ``Client.cancel`` (a bare id works the same way)."""
        return self._run(_lookup.cancel(self._core, job, queue))

    def result(self, job: Job | str, *, queue: str | None = None, timeout: float = 30.0) -> Any:
        """Wait up to ``timeout`` seconds for a job's result; see ``Client.result``.

        Raises ``TimeoutError`` when no result came in time.
        """
        op = _lookup.result(
            self._core, job, queue, timeout=timeout, clock=time.monotonic, too_slow=TimeoutError
        )
        return self._run(op)

    def dead_letters(self, queue: str, *, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of each of ``queue``'s partitions; see
        ``Client.dead_letters``."""
        return self._run(_dead.dead_letters(self._core, queue, count))

    def retry_dead_letters(self, queue: str, ids: Sequence[str] | None = None) -> tuple[int, int]:
        """Re-send dead letters (``ids``, or all) as fresh jobs; (re-sent, skipped). See
        ``Client.retry_dead_letters``."""
        return self._run(_dead.retry_dead_letters(self._core, queue, ids))

    def purge_dead_letters(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids``, or all); how many were deleted."""
        return self._run(_dead.purge_dead_letters(self._core, queue, ids))

    def status(self, job: Job | str, *, queue: str | None = None) -> JobStatus:
        """The job's current state, attempts, timestamps and last error; see
        ``Client.status``."""
        return self._run(_lookup.status(self._core, job, queue))

    def pause(self, queue: str) -> bool:
        """Pause ``queue``; see ``Client.pause`` (False if it was paused already)."""
        return self._run(_pause.set_paused(self._core, queue, True))

    def resume(self, queue: str) -> bool:
        """Resume a paused ``queue``; see ``Client.resume`` (False if it was not paused)."""
        return self._run(_pause.set_paused(self._core, queue, False))

    def events(self, queue: str, *, since: str | None = None) -> Iterator[JobEvent]:
        """Every job event of ``queue``, as a blocking iterator: see ``Client.events``
        (the same cursors, ``since`` and order)."""
        pos = self._run(_events.start(self._core, queue, since))
        while True:
            read = _events.read(self._core, queue, pos, count=500, block_ms=self._events_block_ms)
            batch, pos = self._run(read)
            yield from batch

    def _run(self, op: cmd.Op[T]) -> T:
        """Drive ``op`` to its end on this client's redis-py connection."""
        steps = cmd.Steps(op)
        for command in steps:
            steps.outcome = cmd.capture(self._execute, command)
        return steps.result

    def _execute(self, command: cmd.Command) -> Any:
        """Run one command; the one place redis-py errors become trioqueue errors."""
        if isinstance(command, cmd.BestEffort):
            with suppress(BrokerError):
                self._execute(command.command)
            return None
        if isinstance(command, cmd.Sleep):
            time.sleep(command.seconds)
            return None
        try:
            return self._command(command)
        except rx.RedisError as exc:
            raise classify_sync(exc, self._url) from chainable(exc, self._url)

    def _command(self, command: cmd.Command) -> Any:
        r = self.redis
        match command:
            case scripts.Call():  # first: every send is one
                return run_sync(r, command)
            case cmd.Get(key):
                return r.get(key)
            case cmd.HGet(key, field):
                return r.hget(key, field)
            case cmd.SetPx(key, value, px):
                r.set(key, value, px=px)
                return None
            case cmd.BLPop(key, timeout):
                r.blpop([key], timeout=timeout)
                return None
            case cmd.Delete(keys):
                return r.delete(*keys)
            case cmd.XLen(key):
                return r.xlen(key)
            case cmd.XRange(key, start, end, count, reverse):
                if reverse:
                    return r.xrevrange(key, end, start, count=count)
                return r.xrange(key, start, end, count=count)
            case cmd.XDel(key, ids):
                return r.xdel(key, *ids)
            case cmd.XRead(streams, count, block_ms):
                got = r.xread(dict(streams), count=count, block=block_ms) or []
                pairs = got.items() if isinstance(got, dict) else got
                return [(_text(name), [(_text(i), f) for i, f in items]) for name, items in pairs]
            case cmd.Pipeline():
                return self._pipeline(command)
            case cmd.Replicated(call):
                return command.reply(*run_then_sync(r, call, command.wait))
        raise TypeError(f"not a command: {command!r}")

    def _pipeline(self, pipeline: cmd.Pipeline) -> list[Any]:
        commands = pipeline.commands
        if len(commands) == 1:
            return [self._command(commands[0])]
        try:
            replies = self._pipelined(commands)
        except rx.NoScriptError:
            # As in Client._pipeline: only reads, so sending it again is safe.
            for source in {c.script.source for c in commands if isinstance(c, Call)}:
                self.redis.script_load(source)
            replies = self._pipelined(commands)
        return cmd.parsed(pipeline, replies)

    def _pipelined(self, commands: tuple[cmd.Get | cmd.HGet | Call[Any], ...]) -> list[Any]:
        with self.redis.pipeline(transaction=False) as pipe:
            for c in commands:
                if isinstance(c, cmd.Get):
                    pipe.get(c.key)
                elif isinstance(c, cmd.HGet):
                    pipe.hget(c.key, c.field)
                else:
                    pipe.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
            replies: list[Any] = pipe.execute()
        return replies


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sentinel_client(url: str, kwargs: dict[str, Any]) -> redis_py.Redis:
    """A redis-py client on the primary of a Sentinel URL's service."""
    t = parse_sentinel_url(url)
    node = {**kwargs, "db": t.node.db, "username": t.node.username, "password": t.node.password}
    sentinel = {k: v for k, v in kwargs.items() if k != "health_check_interval"}
    sentinel.update(username=t.sentinel.username, password=t.sentinel.password)
    if t.node.tls:
        node["ssl"] = sentinel["ssl"] = True
    # Untyped in redis-py.
    finder = Sentinel(list(t.sentinels), sentinel_kwargs=sentinel, **node)  # type: ignore[no-untyped-call]
    client: redis_py.Redis = finder.master_for(t.service, **node)  # type: ignore[no-untyped-call]
    return client
