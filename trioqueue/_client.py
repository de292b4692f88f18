"""The async (Trio) client: sends jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import coredis.exceptions as cx
import orjson

from trioqueue._app import App
from trioqueue._config import Config, QueueSettings
from trioqueue._connection import Redis, classify, connected, is_connection_error
from trioqueue._envelope import new_job_id
from trioqueue._errors import BrokerError, MessageTooLarge, QueueFull
from trioqueue._keys import PartitionKeys
from trioqueue._scripts import SEND

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
        self, msg: object, *, queue: str | None = None, job_id: str | None = None
    ) -> Job:
        """Enqueue one message; return its ``Job``.

        Routed to its handler's queue unless ``queue`` is given (required for types
        with no handler on this App). Raises ``QueueFull``, ``MessageTooLarge``,
        ``UnknownMessageType`` or ``BrokerError``; on any of those nothing was enqueued,
        except a ``BrokerUnavailable`` during the call, whose outcome is unknown.
        """
        q, type_name = self.app.route(msg, queue)
        jobs = await self.send_encoded(q, [(job_id or new_job_id(), type_name, self.encode(msg))])
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

    async def send_encoded(self, queue: str, items: Sequence[tuple[str, str, bytes]]) -> list[Job]:
        """Enqueue already-encoded ``(job id, type name, JSON body)`` triples on ``queue``."""
        settings = self._queue_settings(queue)
        for _, _, body in items:
            if len(body) > settings.max_message_bytes:
                raise MessageTooLarge(queue, len(body), settings.max_message_bytes)
        keys = PartitionKeys(self.prefix, queue)
        args: list[Any] = [settings.max_length or 0, settings.max_message_bytes, len(items)]
        for job_id, type_name, body in items:
            args += [job_id, type_name, body]
        try:
            ids: Any = await self._send(keys=[keys.stream, keys.meta], args=args)
        except cx.ResponseError as exc:
            raise _send_error(queue, exc, self._url) from None
        except Exception as exc:
            if is_connection_error(exc):
                raise classify(exc, self._url) from None
            raise
        return [
            Job(id=job_id, queue=queue, entry_id=_text(entry_id))
            for (job_id, _, _), entry_id in zip(items, ids, strict=True)
        ]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _send_error(queue: str, exc: cx.ResponseError, url: str) -> Exception:
    msg = str(exc)
    if msg.startswith("QUEUEFULL"):
        return QueueFull(queue, int(msg.split()[1]))
    if msg.startswith("TOOLARGE"):
        _, size, limit = msg.split()[:3]
        return MessageTooLarge(queue, int(size), int(limit))
    if msg.startswith("WRONGTYPE"):
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
