"""The async (Trio) client: send jobs, wait for results, cancel, handle dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import attrs
import coredis.exceptions as cx
import trio

from trioqueue._app import App
from trioqueue._config import Config
from trioqueue._connection import Redis, classify, connected, is_connection_error
from trioqueue._deadletters import DeadLetter, list_dead, purge_dead, retry_dead
from trioqueue._keys import PartitionKeys
from trioqueue._ops import ClientBase, Item, Job, JobStatus, due_ms, partition_for
from trioqueue._scripts import Call, run

__all__ = ["Client", "Job"]

T = TypeVar("T")
# A waiting client renews its "someone waits" marker this often (see Client.result).
WAIT_KEY_MS = 15_000


class Client(ClientBase):
    """Sends jobs to an App's queues from Trio code. Get one with ``App.connect``."""

    def __init__(
        self, app: App, redis: Redis, *, prefix: str, config: Config | None, url: str
    ) -> None:
        super().__init__(app, prefix=prefix, config=config, url=url)
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
        q, item = self._one(msg, queue, job_id, key)
        partition = partition_for(key or job_id, await self.partitions(q))
        jobs = await self.send_encoded(
            q, [item], unique=job_id is not None, due=due_ms(delay, at), partition=partition
        )
        return jobs[0]

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
        count, by_queue = self._many(msgs, queue, key)
        counts = {q: await self.partitions(q) for q in by_queue}
        out: list[Job | None] = [None] * count
        for q, p, chunk in self._chunks(by_queue, counts):
            jobs = await self.send_encoded(q, [item for _, item in chunk], partition=p)
            for (i, _), job in zip(chunk, jobs, strict=True):
                out[i] = job
        return [job for job in out if job is not None]

    async def partitions(self, queue: str) -> int:
        """The queue's partition count (the one stored in Redis wins; cached briefly)."""
        n = self._cached_partitions(queue)
        if n is None:
            meta = PartitionKeys(self.prefix, queue).meta
            try:
                stored = await self.redis.hget(meta, "partitions")
            except Exception as exc:
                if is_connection_error(exc) or isinstance(exc, cx.RedisError):
                    raise classify(exc, self._url) from None
                raise
            n = self._remember_partitions(queue, stored)
        return n

    async def send_encoded(
        self,
        queue: str,
        items: Sequence[Item],
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
        sent = await self._call(self._send_call(queue, partition, items, unique, due))
        return self._jobs(queue, partition, items, sent)

    async def cancel(self, job: Job | str, *, queue: str | None = None) -> str:
        """Cancel a job. Returns ``"removed"`` (it was still waiting and is gone),
        ``"running"`` (its worker was asked to cancel it; it settles as cancelled) or
        ``"unknown"`` (already finished, or no such job).

        With a bare job id (and ``queue``), a waiting job is found by scanning the
        queue, which is slower on long queues than passing the ``Job``.
        """
        j = await self._locate(job, queue)
        return await self._call(self._cancel_call(j))

    async def result(
        self, job: Job | str, *, queue: str | None = None, timeout: float = 30.0
    ) -> Any:
        """Wait for a job's result and return it, structured into the handler's return
        type when the job's type is known to this App. ``timeout`` may be ``math.inf``.

        Raises ``JobFailed`` if it was dead-lettered, ``JobCancelled`` if cancelled,
        ``trio.TooSlowError`` after ``timeout`` seconds. Outcomes are kept for the
        queue's ``result_ttl`` (0 keeps none, and then this can only time out).
        """
        j = await self._locate(job, queue)
        keys = PartitionKeys(self.prefix, j.queue, j.partition)
        deadline = trio.current_time() + timeout
        try:
            while True:
                # Tell the settling script someone waits, then read: a result stored
                # between the two is seen by the read; one stored after it pushes a
                # wake-up. Refreshed each round, so a long wait never loses it.
                await self._io(self.redis.set(keys.result_wait(j.id), b"1", px=WAIT_KEY_MS))
                doc = await self._io(self.redis.get(keys.result(j.id)))
                if doc is not None:
                    return self._outcome(j, doc)
                remaining = deadline - trio.current_time()
                if remaining <= 0:
                    raise trio.TooSlowError(f"no result for job {j.id} within {timeout}s")
                await self._io(
                    self.redis.blpop([keys.result_done(j.id)], timeout=min(remaining, 5.0))
                )
        finally:
            # Best effort: both keys expire by themselves.
            with trio.CancelScope(shield=True), trio.move_on_after(5), suppress(Exception):
                await self.redis.delete([keys.result_wait(j.id), keys.result_done(j.id)])

    async def status(self, job: Job | str, *, queue: str | None = None) -> JobStatus:
        """The job's current state, attempts, timestamps and last error."""
        j = await self._locate(job, queue)
        return await self._status_in(j)

    async def _status_in(self, j: Job) -> JobStatus:
        keys = PartitionKeys(self.prefix, j.queue, j.partition)
        doc = await self._io(self.redis.get(keys.result(j.id)))
        found = None
        if doc is None:
            found = await self._call(self._find_call(j))
        return self._status(j, doc, found)

    async def _locate(self, job: Job | str, queue: str | None) -> Job:
        """A ``Job`` for ``job``; for a bare id on a partitioned queue, the partition
        that knows it (the id's own hash partition when none does yet)."""
        j = self._job(job, queue)
        if isinstance(job, Job):
            return j
        n = await self.partitions(j.queue)
        if n == 1:
            return j
        home = partition_for(j.id, n)
        for p in [home, *(p for p in range(n) if p != home)]:
            candidate = attrs.evolve(j, partition=p)
            if (await self._status_in(candidate)).state != "unknown":
                return candidate
        return attrs.evolve(j, partition=home)

    async def dead_letters(self, queue: str, *, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of ``queue`` (of each of its partitions)."""
        out: list[DeadLetter] = []
        for p in range(await self.partitions(queue)):
            keys = PartitionKeys(self.prefix, queue, p)
            out += await self._io(list_dead(self.redis, keys, count))
        return out

    async def retry_dead_letters(
        self, queue: str, ids: Sequence[str] | None = None
    ) -> tuple[int, int]:
        """Re-send dead letters (``ids``, or all) as fresh jobs with attempts reset.

        Returns (re-sent, skipped); skipped entries are not job envelopes and stay.
        """
        resent = skipped = 0
        for p in range(await self.partitions(queue)):
            keys = PartitionKeys(self.prefix, queue, p)
            r, s = await self._io(retry_dead(self.redis, keys, ids))
            resent, skipped = resent + r, skipped + s
        return resent, skipped

    async def purge_dead_letters(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids``, or all); returns how many were deleted."""
        deleted = 0
        for p in range(await self.partitions(queue)):
            keys = PartitionKeys(self.prefix, queue, p)
            deleted += await self._io(purge_dead(self.redis, keys, ids))
        return deleted

    async def _io(self, awaitable: Awaitable[T]) -> T:
        """Await a broker call, turning client errors into ``BrokerError``s."""
        try:
            return await awaitable
        except Exception as exc:
            if is_connection_error(exc) or isinstance(exc, cx.RedisError):
                raise classify(exc, self._url) from None
            raise

    async def _call(self, call: Call[T]) -> T:
        """Run a script call; its declared error codes raise trioqueue's errors."""
        return await self._io(run(self.redis, call))


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
