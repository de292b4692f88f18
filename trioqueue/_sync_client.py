"""The synchronous client (redis-py) for code that is not async: Django, Flask, scripts.

Same wire format and the very same Lua scripts as the Trio client (see ``_ops.py``).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from types import TracebackType
from typing import Any

import attrs
import redis as redis_py
import redis.exceptions as rx

from trioqueue._app import App
from trioqueue._config import Config
from trioqueue._connection import broker_error, check_url, redact, redact_url
from trioqueue._errors import BrokerError
from trioqueue._keys import PartitionKeys
from trioqueue._ops import ClientBase, Item, Job, JobStatus, due_ms, partition_for
from trioqueue._scripts import run_sync

__all__ = ["SyncClient"]

WAIT_KEY_MS = 15_000


class SyncClient(ClientBase):
    """Sends jobs from synchronous code. Get one with ``App.connect_sync``; use it as
    a context manager (or call ``close``). Safe to share between threads."""

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
    ) -> None:
        super().__init__(app, prefix=prefix, config=config, url=url)
        check_url(url)
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            "health_check_interval": 30,
        }
        if url.startswith("rediss://") and tls_ca_file:
            kwargs["ssl_ca_certs"] = tls_ca_file
        try:
            self.redis: redis_py.Redis = redis_py.Redis.from_url(url, **kwargs)
        except (ValueError, TypeError) as exc:
            raise BrokerError(
                f"invalid broker URL {redact_url(url)}: {redact(str(exc), url)}"
            ) from None
        self._io(self.redis.ping)

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
        q, item = self._one(msg, queue, job_id, key)
        partition = partition_for(key or job_id, self.partitions(q))
        return self.send_encoded(
            q, [item], unique=job_id is not None, due=due_ms(delay, at), partition=partition
        )[0]

    def send_many(
        self,
        msgs: Iterable[object],
        *,
        queue: str | None = None,
        key: Callable[[Any], str] | None = None,
    ) -> list[Job]:
        """Enqueue many messages in as few round trips as possible; see ``Client.send_many``."""
        count, by_queue = self._many(msgs, queue, key)
        counts = {q: self.partitions(q) for q in by_queue}
        out: list[Job | None] = [None] * count
        for q, p, chunk in self._chunks(by_queue, counts):
            jobs = self.send_encoded(q, [item for _, item in chunk], partition=p)
            for (i, _), job in zip(chunk, jobs, strict=True):
                out[i] = job
        return [job for job in out if job is not None]

    def partitions(self, queue: str) -> int:
        """The queue's partition count (the one stored in Redis wins; cached briefly)."""
        n = self._cached_partitions(queue)
        if n is None:
            meta = PartitionKeys(self.prefix, queue).meta
            n = self._remember_partitions(
                queue, self._io(lambda: self.redis.hget(meta, "partitions"))
            )
        return n

    def send_encoded(
        self,
        queue: str,
        items: Sequence[Item],
        *,
        unique: bool = False,
        due: int = 0,
        partition: int = 0,
    ) -> list[Job]:
        """Enqueue already-encoded ``(job id, type name, JSON body, key)`` items."""
        call = self._send_call(queue, partition, items, unique, due)
        sent = self._io(lambda: run_sync(self.redis, call))
        return self._jobs(queue, partition, items, sent)

    def cancel(self, job: Job | str, *, queue: str | None = None) -> str:
        """Cancel a job; see ``Client.cancel``."""
        call = self._cancel_call(self._locate(job, queue))
        outcome: str = self._io(lambda: run_sync(self.redis, call))
        return outcome

    def result(self, job: Job | str, *, queue: str | None = None, timeout: float = 30.0) -> Any:
        """Wait up to ``timeout`` seconds for a job's result; see ``Client.result``.

        Raises ``TimeoutError`` when no result came in time.
        """
        j = self._locate(job, queue)
        keys = PartitionKeys(self.prefix, j.queue, j.partition)
        deadline = time.monotonic() + timeout
        wait_key, done_key = keys.result_wait(j.id), keys.result_done(j.id)
        try:
            while True:
                self._io(lambda: self.redis.set(wait_key, b"1", px=WAIT_KEY_MS))
                doc = self._io(lambda: self.redis.get(keys.result(j.id)))
                if doc is not None:
                    return self._outcome(j, doc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no result for job {j.id} within {timeout}s")
                self._io(lambda r=remaining: self.redis.blpop([done_key], timeout=min(r, 5.0)))
        finally:
            with suppress(BrokerError):
                self._io(lambda: self.redis.delete(wait_key, done_key))

    def status(self, job: Job | str, *, queue: str | None = None) -> JobStatus:
        """The job's current state, attempts, timestamps and last error."""
        return self._status_in(self._locate(job, queue))

    def _status_in(self, j: Job) -> JobStatus:
        key = PartitionKeys(self.prefix, j.queue, j.partition).result(j.id)
        doc = self._io(lambda: self.redis.get(key))
        found = None
        if doc is None:
            call = self._find_call(j)
            found = self._io(lambda: run_sync(self.redis, call))
        return self._status(j, doc, found)

    def _locate(self, job: Job | str, queue: str | None) -> Job:
        j = self._job(job, queue)
        if isinstance(job, Job):
            return j
        n = self.partitions(j.queue)
        if n == 1:
            return j
        home = partition_for(j.id, n)
        for p in [home, *(p for p in range(n) if p != home)]:
            candidate = attrs.evolve(j, partition=p)
            if self._status_in(candidate).state != "unknown":
                return candidate
        return attrs.evolve(j, partition=home)

    def _io(self, fn: Any) -> Any:
        try:
            return fn()
        except rx.RedisError as exc:
            raise self._classify(exc) from None

    def _classify(self, exc: Exception) -> BrokerError:
        return broker_error(
            exc,
            self._url,
            denied=isinstance(exc, rx.AuthenticationError | rx.NoPermissionError),
            unreachable=isinstance(exc, rx.ConnectionError | rx.TimeoutError),
        )
