"""Paused queues: which of this worker's queues it must not fetch from now.

The truth is the flag ``P:{Q:0}:paused`` in Redis (``Client.pause`` sets it). The
worker holds a copy in memory that the fetchers check before each read, at no cost
to the broker: it is read once before the consumers start, the control listener
updates it the moment a pause or resume is published, and the pause watch reads
every queue's flag once per ``worker.block``, for messages missed while the
subscription was down. A read already blocked when the pause came returns within
``worker.block``; after that the queue's consumers read nothing until it resumes.

Cancellation: the watch is cancelled with the other loops.

Error handling: the watch retries silently after a lost connection (the other loops
report outages); other errors propagate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import trio

from trioqueue._connection import Redis
from trioqueue._keys import PartitionKeys
from trioqueue._worker._outage import repeat

__all__ = ["PauseWatch", "Pauses", "read_paused"]

log = logging.getLogger("trioqueue.worker.pause")


async def read_paused(redis: Redis, prefix: str, queues: Iterable[str]) -> dict[str, bool]:
    """Whether each of ``queues`` is paused, read from Redis (one key per queue, each in
    its partition 0's hash slot)."""
    return {q: bool(await redis.exists([PartitionKeys(prefix, q).paused])) for q in queues}


class Pauses:
    """This worker's copy of the pause flags; ``on_change(queue)`` runs on each change."""

    def __init__(self, queues: Iterable[str]) -> None:
        self._paused = dict.fromkeys(queues, False)
        self.on_change: Callable[[str], None] = lambda queue: None

    def paused(self, queue: str) -> bool:
        """Whether ``queue`` is paused (the fetchers ask before each read)."""
        return self._paused.get(queue, False)

    def snapshot(self) -> Mapping[str, bool]:
        """Every queue of this worker and whether it is paused."""
        return dict(self._paused)

    def set(self, queue: str, paused: bool) -> None:
        """Record ``queue``'s state (queues this worker does not consume are ignored)."""
        if queue not in self._paused or self._paused[queue] == paused:
            return
        self._paused[queue] = paused
        if paused:
            log.warning("queue %s paused: fetching no new jobs; running jobs finish", queue)
        else:
            log.warning("queue %s resumed", queue)
        self.on_change(queue)


class PauseWatch:
    """Reads the pause flags once per ``block`` interval."""

    def __init__(self, redis: Redis, prefix: str, pauses: Pauses, *, interval: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._pauses = pauses
        self._interval = interval

    async def refresh(self) -> None:
        """Read every flag now."""
        queues = list(self._pauses.snapshot())
        for queue, paused in (await read_paused(self._redis, self._prefix, queues)).items():
            self._pauses.set(queue, paused)

    async def run(self) -> None:
        """Read the flags every interval until cancelled."""

        async def step() -> float:
            await self.refresh()
            return self._interval

        await trio.sleep(self._interval)
        await repeat("pause watch", step, None, max_wait=self._interval)
