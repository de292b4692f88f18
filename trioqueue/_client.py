"""The async (Trio) client: sends jobs."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import coredis.exceptions as cx
import orjson
import trio

from trioqueue._app import App
from trioqueue._config import Config, QueueSettings
from trioqueue._connection import Redis, classify, connected, is_connection_error
from trioqueue._deadletters import DeadLetter, list_dead, purge_dead, retry_dead
from trioqueue._envelope import new_job_id
from trioqueue._errors import BrokerError, JobCancelled, JobFailed, MessageTooLarge, QueueFull
from trioqueue._keys import GROUP, PartitionKeys, control_channel
from trioqueue._scripts import CANCEL, DLQ_RETRY, SEND

__all__ = ["Client", "Job"]

# A send script call stays well under the server's busy threshold with this many jobs.
SEND_CHUNK = 1000


@attrs.frozen
class Job:
    """A job that was enqueued: its ``id`` and where it went."""

    id: str
    queue: str
    partition: int = 0
    entry_id: str = ""
    type_name: str = ""
    duplicate: bool = False
    """True when ``send(job_id=...)`` found that job already enqueued: nothing was added."""


class Client:
    """Sends jobs to an App's queues. Get one with ``App.connect``."""

    def __init__(
        self, app: App, redis: Redis, *, prefix: str, config: Config | None, url: str
    ) -> None:
        self.app = app
        self.redis = redis
        self.prefix = prefix
        self._config = config
        self._url = url
        self._send = redis.register_script(SEND)
        self._cancel = redis.register_script(CANCEL)
        self._dlq_retry = redis.register_script(DLQ_RETRY)
        self._settings: dict[str, QueueSettings] = {}

    def _queue_settings(self, queue: str) -> QueueSettings:
        got = self._settings.get(queue)
        if got is None:
            got = self._settings[queue] = self.app.queue_settings(queue, self._config)
        return got

    def encode(self, msg: object) -> bytes:
        """The JSON body of ``msg`` as it goes on the wire."""
        return orjson.dumps(self.app.converter.unstructure(msg))

    async def send(
        self,
        msg: object,
        *,
        queue: str | None = None,
        job_id: str | None = None,
        delay: float | dt.timedelta | None = None,
        at: dt.datetime | None = None,
    ) -> Job:
        """Enqueue one message; return its ``Job``.

        Routed to its handler's queue unless ``queue`` is given (required for types
        with no handler on this App). ``delay`` (seconds or a timedelta, measured on
        the server's clock) or ``at`` (an aware datetime) schedule it for later.

        With ``job_id`` the send is idempotent: while a job with that id is queued,
        scheduled, running or its outcome is kept, sending it again enqueues nothing
        and returns a ``Job`` with ``duplicate=True``. That also makes it safe to
        retry a send whose outcome was unknown (``BrokerUnavailable``).

        Raises ``QueueFull``, ``MessageTooLarge``, ``UnknownMessageType`` or
        ``BrokerError``; on any of those nothing was enqueued, except a
        ``BrokerUnavailable`` during the call, whose outcome is unknown.
        """
        q, type_name = self.app.route(msg, queue)
        if job_id is not None and not job_id:
            raise ValueError("job_id must not be empty")
        jobs = await self.send_encoded(
            q,
            [(job_id or new_job_id(), type_name, self.encode(msg))],
            unique=job_id is not None,
            due=_due(delay, at),
        )
        return jobs[0]

    async def send_many(self, msgs: Iterable[object], *, queue: str | None = None) -> list[Job]:
        """Enqueue many messages in as few round trips as possible (one per queue and
        ``SEND_CHUNK`` messages). Jobs come back in the order of ``msgs``.

        A chunk is all-or-nothing: ``QueueFull`` means none of that chunk was added.
        """
        by_queue: dict[str, list[tuple[int, tuple[str, str, bytes]]]] = {}
        count = 0
        for i, msg in enumerate(msgs):
            q, type_name = self.app.route(msg, queue)
            by_queue.setdefault(q, []).append((i, (new_job_id(), type_name, self.encode(msg))))
            count += 1
        out: list[Job | None] = [None] * count
        for q, items in by_queue.items():
            for start in range(0, len(items), SEND_CHUNK):
                chunk = items[start : start + SEND_CHUNK]
                jobs = await self.send_encoded(q, [item for _, item in chunk])
                for (i, _), job in zip(chunk, jobs, strict=True):
                    out[i] = job
        return [job for job in out if job is not None]

    async def send_encoded(
        self,
        queue: str,
        items: Sequence[tuple[str, str, bytes]],
        *,
        unique: bool = False,
        due: int = 0,
    ) -> list[Job]:
        """Enqueue already-encoded ``(job id, type name, JSON body)`` triples on ``queue``.

        ``unique``: the ids were chosen by the caller, enqueue each at most once.
        ``due``: 0 = now, > 0 = epoch milliseconds, < 0 = minus a delay in milliseconds.
        """
        settings = self._queue_settings(queue)
        for _, _, body in items:
            if len(body) > settings.max_message_bytes:
                raise MessageTooLarge(queue, len(body), settings.max_message_bytes)
        keys = PartitionKeys(self.prefix, queue)
        args: list[Any] = [
            settings.max_length or 0,
            settings.max_message_bytes,
            "1" if unique else "",
            due,
            len(items),
        ]
        for job_id, type_name, body in items:
            args += [job_id, type_name, body]
        try:
            res: Any = await self._send(keys=[keys.stream, keys.meta, keys.delayed], args=args)
        except cx.ResponseError as exc:
            raise _send_error(queue, exc, self._url) from None
        except Exception as exc:
            if is_connection_error(exc):
                raise classify(exc, self._url) from None
            raise
        ids, dups = res
        return [
            Job(
                id=job_id,
                queue=queue,
                entry_id=_text(entry_id),
                type_name=type_name,
                duplicate=bool(int(dup)),
            )
            for (job_id, type_name, _), entry_id, dup in zip(items, ids, dups, strict=True)
        ]

    # ------------------------------------------------------------ job control

    def _job(self, job: Job | str, queue: str | None) -> Job:
        if isinstance(job, Job):
            return job
        if queue is None:
            raise ValueError("pass a Job, or a job id together with queue=...")
        return Job(id=job, queue=queue)

    async def cancel(self, job: Job | str, *, queue: str | None = None) -> str:
        """Cancel a job. Returns ``"removed"`` (it was still waiting and is gone),
        ``"running"`` (its worker was asked to cancel it; it settles as cancelled) or
        ``"unknown"`` (already finished, or no such job).

        With a bare job id (and ``queue``), a waiting job is found by scanning the
        queue, which is slower on long queues than passing the ``Job``.
        """
        j = self._job(job, queue)
        keys = PartitionKeys(self.prefix, j.queue, j.partition)
        settings = self._queue_settings(j.queue)
        res = await self._call(
            self._cancel,
            [keys.stream, keys.delayed, keys.cancel_marker(j.id), keys.result(j.id)],
            [
                GROUP,
                j.id,
                j.entry_id,
                int(settings.result_ttl * 1000),
                100_000,
                control_channel(self.prefix),
                orjson.dumps({"state": "cancelled"}),
            ],
        )
        return _text(res)

    async def result(
        self, job: Job | str, *, queue: str | None = None, timeout: float = 30.0
    ) -> Any:
        """Wait for a job's result and return it, structured into the handler's return
        type when the job's type is known to this App.

        Raises ``JobFailed`` if it was dead-lettered, ``JobCancelled`` if cancelled,
        ``trio.TooSlowError`` after ``timeout`` seconds. Only handlers whose return
        annotation is not ``None`` store a result (kept ``result_ttl`` seconds).
        """
        j = self._job(job, queue)
        keys = PartitionKeys(self.prefix, j.queue, j.partition)
        deadline = trio.current_time() + timeout
        # Tell the settling script someone waits, then read: a result stored between
        # the two is seen by the read; one stored after it pushes a wake-up.
        await self.redis.set(keys.result_wait(j.id), b"1", px=int(timeout * 1000) + 1000)
        try:
            while True:
                doc = await self.redis.get(keys.result(j.id))
                if doc is not None:
                    return self._outcome(j, orjson.loads(doc))
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    raise trio.TooSlowError(f"no result for job {j.id} within {timeout}s")
                await self.redis.blpop([keys.result_done(j.id)], timeout=min(remaining, 5.0))
        finally:
            with trio.CancelScope(shield=True):
                await self.redis.delete([keys.result_wait(j.id), keys.result_done(j.id)])

    def _outcome(self, job: Job, doc: dict[str, Any]) -> Any:
        state = doc.get("state")
        if state == "failed":
            raise JobFailed(job.id, str(doc.get("error_type", "")), str(doc.get("error", "")))
        if state == "cancelled":
            raise JobCancelled(job.id)
        value = doc.get("result")
        handler = self.app.handler_for_name(job.type_name) if job.type_name else None
        if handler is not None and handler.returns_value:
            return self.app.converter.structure(value, handler.return_type)
        return value

    # ------------------------------------------------------------ dead letters

    async def dead_letters(self, queue: str, *, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` entries of ``queue``'s dead-letter stream."""
        return await list_dead(self.redis, PartitionKeys(self.prefix, queue), count)

    async def retry_dead_letters(
        self, queue: str, ids: Sequence[str] | None = None
    ) -> tuple[int, int]:
        """Re-send dead letters (``ids``, or all) as fresh jobs with attempts reset.

        Returns (re-sent, skipped); skipped entries are not job envelopes and stay.
        """
        return await retry_dead(self.redis, self._dlq_retry, PartitionKeys(self.prefix, queue), ids)

    async def purge_dead_letters(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids``, or all); returns how many were deleted."""
        return await purge_dead(self.redis, PartitionKeys(self.prefix, queue), ids)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except Exception as exc:
            if is_connection_error(exc) or isinstance(exc, cx.RedisError):
                raise classify(exc, self._url) from None
            raise


def _due(delay: float | dt.timedelta | None, at: dt.datetime | None) -> int:
    if delay is not None and at is not None:
        raise ValueError("give delay or at, not both")
    if at is not None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("at must be an aware datetime (e.g. datetime.now(UTC) + ...)")
        return max(1, int(at.timestamp() * 1000))
    if delay is None:
        return 0
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else float(delay)
    if seconds < 0:
        raise ValueError("delay must be >= 0")
    return -int(seconds * 1000) if seconds > 0 else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _send_error(queue: str, exc: cx.ResponseError, url: str) -> Exception:
    msg = str(exc)
    if msg.startswith("QUEUEFULL"):
        return QueueFull(queue, int(msg.split()[1]))
    if msg.startswith("TOOLARGE"):
        _, size, limit = msg.split()[:3]
        return MessageTooLarge(queue, int(size), int(limit))
    # coredis strips the WRONGTYPE code from the message and signals it by class.
    if isinstance(exc, cx.WrongTypeError) or msg.startswith("WRONGTYPE"):
        return BrokerError(
            f"queue {queue!r}: its stream key holds another Redis type; "
            "another program uses the same key prefix"
        )
    return classify(exc, url)


@asynccontextmanager
async def open_client(
    app: App,
    url: str,
    *,
    prefix: str,
    config: Config | None,
    connect_timeout: float,
    socket_timeout: float,
    tls_ca_file: str | None,
) -> AsyncIterator[Client]:
    async with connected(
        url,
        connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        tls_ca_file=tls_ca_file,
    ) as redis:
        yield Client(app, redis, prefix=prefix, config=config, url=url)
