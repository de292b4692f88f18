"""The rollback watch: notices when the broker lost writes it had acknowledged.

After a failover the new primary may lack the last writes of the old one (replication
is asynchronous), and a server restarted without persistence has lost everything.
Every stream counts the entries ever added to it (``XINFO STREAM``'s
``entries-added``, kept by the server since Redis 7.0, persisted with the data), so a
count lower than one seen before means entries the broker had acknowledged are gone.

Once per ``heartbeat_interval`` (and as soon as the broker answers again after an
outage) the watch reads that count for every partition of the worker's queues, one
command per partition in one pipeline (one per node on a cluster), none per job.
When a count went backwards it logs one line per partition with how many entries went
missing, adds them to the partition's
``rollbacks``/``lost`` counters (``P:{Q:N}:meta``, shown by ``status``), and distrusts
peers' missing heartbeats for one TTL, as after a restart: their renewals may have been
lost too. A partition's high-water mark lives in this process only: a copy in the
broker would be rolled back with the data it guards.

Cancellation: the loop ends with the other loops. Errors: a lost connection is
ridden out like any loop's; a stream that does not exist counts as zero entries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from trioqueue._config import QueueSettings
from trioqueue._keys import PartitionKeys
from trioqueue._redis import ReplyError
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._outage import repeat

__all__ = ["RollbackWatch"]

log = logging.getLogger("trioqueue.worker.rollback")


class RollbackWatch:
    """Compares each partition's ``entries-added`` with the highest seen."""

    def __init__(
        self, ctx: WorkerContext, settings: Callable[[], Mapping[str, QueueSettings]]
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._seen: dict[tuple[str, int], int] = {}
        self.lost = 0  # entries found missing since the worker started

    async def run(self) -> None:
        """Check until cancelled."""
        interval = self._ctx.worker.heartbeat_interval

        async def step() -> float:
            await self.check()
            return interval

        await repeat("rollback watch", step, self._ctx.outage)

    async def check(self) -> int:
        """Check every partition once; how many entries were found missing."""
        every = [
            PartitionKeys(self._ctx.prefix, name, p)
            for name, s in self._settings().items()
            for p in range(s.partitions)
        ]
        replies = await self._ctx.redis.pipeline([("XINFO", "STREAM", k.stream) for k in every])
        missing = 0
        for keys, reply in zip(every, replies, strict=True):
            missing += await self._check_one(keys, _entries_added(reply))
        if missing:
            self._ctx.liveness.distrust()
        return missing

    async def _check_one(self, keys: PartitionKeys, added: int) -> int:
        where = (keys.queue, keys.partition)
        before = self._seen.get(where)
        self._seen[where] = added if before is None else max(before, added)
        if before is None or added >= before:
            return 0
        gone = before - added
        self._seen[where] = added
        self.lost += gone
        log.error(
            "queue %s partition %d: the broker lost %d acknowledged entr%s (entries added "
            "went from %d to %d: a failover to a replica that lagged, a restart "
            "without persistence, or the stream was deleted); jobs sent in that window "
            "may never run",
            keys.queue,
            keys.partition,
            gone,
            "y" if gone == 1 else "ies",
            before,
            added,
        )
        await self._ctx.redis.execute("HINCRBY", keys.meta, "rollbacks", 1)
        await self._ctx.redis.execute("HINCRBY", keys.meta, "lost", gone)
        return gone


def _entries_added(reply: Any) -> int:
    """``entries-added`` of an ``XINFO STREAM`` reply; 0 for a stream that does not
    exist; any other error reply is raised."""
    if isinstance(reply, ReplyError):
        if "no such key" in str(reply).lower():
            return 0
        raise reply
    it = iter(reply)
    info = dict(zip(it, it, strict=True))
    return int(info.get(b"entries-added", 0))
