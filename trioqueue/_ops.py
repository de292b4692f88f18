"""What the async and the sync client share: routing, encoding, the script calls they
make and the reading of their replies. The I/O itself lives in ``_client.py`` (coredis,
Trio) and ``_sync_client.py`` (redis-py); both run the same typed calls of
``_scripts`` (the Lua in ``_lua/``)."""

from __future__ import annotations

import datetime as dt
import random
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import attrs
import orjson

from trioqueue import _scripts as scripts
from trioqueue._app import App
from trioqueue._config import Config, QueueSettings
from trioqueue._envelope import new_job_id
from trioqueue._errors import JobCancelled, JobFailed, MessageTooLarge
from trioqueue._keys import PartitionKeys, control_channel

# A send script call stays well under the server's busy threshold with this many jobs.
SEND_CHUNK = 1000
# How long a client trusts the partition count it read from Redis.
PARTITIONS_CACHE = 10.0
# How far a cancel by bare job id scans a queue for a waiting job.
CANCEL_SCAN = 100_000

Item = scripts.SendItem  # (job id, wire type name, JSON body, key or "")


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


JobState = Literal[
    "queued", "scheduled", "active", "retrying", "succeeded", "failed", "cancelled", "unknown"
]


@attrs.frozen
class JobStatus:
    """Where a job is in its life, as far as the broker knows.

    ``queued``: waiting in its stream; ``scheduled``: delayed (``delay=``/``at=``);
    ``active``: delivered to a worker (``worker``, ``started_at``); ``retrying``: a
    failed attempt waits for its backoff (``due_at``, ``error``); ``succeeded``,
    ``failed`` (dead-lettered) and ``cancelled`` are kept for ``result_ttl``;
    ``unknown``: never sent, or its outcome expired.
    """

    job_id: str
    queue: str
    state: JobState
    attempts: int = 0
    enqueued_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    due_at: dt.datetime | None = None
    worker: str | None = None
    error: str | None = None


def _ms(value: Any) -> dt.datetime | None:
    try:
        ms = int(float(value))
    except (TypeError, ValueError):
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC) if ms > 0 else None


class ClientBase:
    """Pure client logic shared by ``Client`` and ``SyncClient``."""

    def __init__(self, app: App, *, prefix: str, config: Config | None, url: str) -> None:
        self.app = app
        self.prefix = prefix
        self._config = config
        self._url = url
        self._settings: dict[str, QueueSettings] = {}
        self._partitions: dict[str, tuple[int, float]] = {}

    def queue_settings(self, queue: str) -> QueueSettings:
        """The settings this client applies to ``queue`` (bounds, result TTL)."""
        got = self._settings.get(queue)
        if got is None:
            got = self._settings[queue] = self.app.queue_settings(queue, self._config)
        return got

    def encode(self, msg: object) -> bytes:
        """The JSON body of ``msg`` as it goes on the wire."""
        return orjson.dumps(self.app.converter.unstructure(msg))

    def _one(
        self, msg: object, queue: str | None, job_id: str | None, key: str | None
    ) -> tuple[str, Item]:
        q, type_name = self.app.route(msg, queue)
        if job_id is not None and not job_id:
            raise ValueError("job_id must not be empty")
        return q, (job_id or new_job_id(), type_name, self.encode(msg), key or "")

    def _many(
        self, msgs: Iterable[object], queue: str | None, key: Callable[[Any], str] | None
    ) -> tuple[int, dict[str, list[tuple[int, Item]]]]:
        """Group messages by queue, remembering their positions."""
        by_queue: dict[str, list[tuple[int, Item]]] = {}
        count = 0
        for i, msg in enumerate(msgs):
            q, item = self._one(msg, queue, None, key(msg) if key is not None else None)
            by_queue.setdefault(q, []).append((i, item))
            count += 1
        return count, by_queue

    @staticmethod
    def _chunks(
        by_queue: dict[str, list[tuple[int, Item]]], partitions: dict[str, int]
    ) -> list[tuple[str, int, list[tuple[int, Item]]]]:
        """Split each queue's items by partition, then into script-sized chunks."""
        out = []
        for q, items in by_queue.items():
            by_partition: dict[int, list[tuple[int, Item]]] = {}
            for pos, item in items:
                p = partition_for(item[3] or None, partitions[q])
                by_partition.setdefault(p, []).append((pos, item))
            for p, part in sorted(by_partition.items()):
                for start in range(0, len(part), SEND_CHUNK):
                    out.append((q, p, part[start : start + SEND_CHUNK]))
        return out

    def _cached_partitions(self, queue: str) -> int | None:
        got = self._partitions.get(queue)
        if got is not None and time.monotonic() - got[1] < PARTITIONS_CACHE:
            return got[0]
        return None

    def _remember_partitions(self, queue: str, stored: Any) -> int:
        """The partition count: the one stored in Redis wins over the local setting."""
        n = int(stored) if stored is not None else self.queue_settings(queue).partitions
        self._partitions[queue] = (n, time.monotonic())
        return n

    def _send_call(
        self, queue: str, partition: int, items: Sequence[Item], unique: bool, due: int
    ) -> scripts.Call[scripts.Sent]:
        settings = self.queue_settings(queue)
        for _, _, body, _ in items:
            if len(body) > settings.max_message_bytes:
                raise MessageTooLarge(queue, len(body), settings.max_message_bytes)
        return scripts.send(
            PartitionKeys(self.prefix, queue, partition),
            items,
            max_length=settings.max_length or 0,
            max_message_bytes=settings.max_message_bytes,
            unique=unique,
            due=due,
        )

    @staticmethod
    def _jobs(queue: str, partition: int, items: Sequence[Item], sent: scripts.Sent) -> list[Job]:
        return [
            Job(
                id=job_id,
                queue=queue,
                partition=partition,
                entry_id=entry_id,
                type_name=type_name,
                duplicate=dup,
            )
            for (job_id, type_name, _, _), entry_id, dup in zip(
                items, sent.entry_ids, sent.duplicates, strict=True
            )
        ]

    def _job(self, job: Job | str, queue: str | None) -> Job:
        if isinstance(job, Job):
            return job
        if queue is None:
            raise ValueError("pass a Job, or a job id together with queue=...")
        return Job(id=job, queue=queue)

    def _cancel_call(self, job: Job) -> scripts.Call[scripts.CancelOutcome]:
        return scripts.cancel(
            PartitionKeys(self.prefix, job.queue, job.partition),
            job_id=job.id,
            entry_id=job.entry_id,
            result_ttl_ms=int(self.queue_settings(job.queue).result_ttl * 1000),
            scan_limit=CANCEL_SCAN,
            channel=control_channel(self.prefix),
            outcome=orjson.dumps({"state": "cancelled"}),
        )

    def _find_call(self, job: Job) -> scripts.Call[scripts.InStream | scripts.InDelayed | None]:
        return scripts.find(
            PartitionKeys(self.prefix, job.queue, job.partition),
            job_id=job.id,
            entry_id=job.entry_id,
            scan_limit=CANCEL_SCAN,
        )

    @staticmethod
    def _status(
        job: Job, doc: bytes | None, found: scripts.InStream | scripts.InDelayed | None
    ) -> JobStatus:
        if doc is not None:
            d = orjson.loads(doc)
            error = (
                f"{d.get('error_type', '')}: {d.get('error', '')}" if d.get("error_type") else None
            )
            return JobStatus(
                job.id,
                job.queue,
                d.get("state", "unknown"),
                attempts=int(d.get("attempts", 0)),
                enqueued_at=_ms(d.get("enqueued")),
                finished_at=_ms(d.get("finished")),
                error=error,
            )
        if isinstance(found, scripts.InStream):
            fields = found.fields
            common: dict[str, Any] = {
                "attempts": int(fields.get("attempt", "1")),
                "enqueued_at": _ms(fields.get("enqueued", found.entry_id.split("-")[0])),
                "error": fields.get("error"),
            }
            if found.pending is not None:
                owner, idle, _ = found.pending
                started = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=idle)
                return JobStatus(
                    job.id, job.queue, "active", worker=owner, started_at=started, **common
                )
            return JobStatus(job.id, job.queue, "queued", **common)
        if isinstance(found, scripts.InDelayed):
            d = orjson.loads(found.payload)
            attempt = int(d.get("attempt", 1))
            return JobStatus(
                job.id,
                job.queue,
                "retrying" if attempt > 1 else "scheduled",
                attempts=attempt,
                enqueued_at=_ms(d.get("enqueued")),
                due_at=_ms(found.due_ms),
                error=d.get("error"),
            )
        return JobStatus(job.id, job.queue, "unknown")

    def _outcome(self, job: Job, raw: bytes | str) -> Any:
        doc = orjson.loads(raw)
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


def partition_for(key: str | None, partitions: int) -> int:
    """The partition of ``key``: CRC-32 (zlib, unsigned) of its UTF-8 bytes, modulo the
    partition count; without a key, a random partition (spreads the load)."""
    if partitions <= 1:
        return 0
    if key is None:
        return random.randrange(partitions)
    return zlib.crc32(key.encode("utf-8")) % partitions


def due_ms(delay: float | dt.timedelta | None, at: dt.datetime | None) -> int:
    """The SEND script's ``due`` argument: 0 now, > 0 epoch ms, < 0 minus a delay in ms."""
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
