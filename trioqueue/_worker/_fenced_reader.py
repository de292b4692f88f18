"""Reading an owned partition of an ordered queue: take over, then fenced reads.

A new owner first claims everything pending in the partition, in stream order, and
serves those entries before anything new. New entries are read by a script that
checks the lease token first, so a member whose lease passed to another reads
nothing; when there is nothing new it blocks on a plain ``XREAD``, which takes
nothing, until an entry arrives.

Error handling: a refused read (reply ``FENCED``) raises ``LeaseLost``; a read cut off
on our side hands the partition over (it may have delivered entries whose reply we
never saw, and only a new owner can run them in order); errors propagate to the
fetch loop.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import trio

from trioqueue import _scripts as scripts
from trioqueue._broker_errors import is_connection_error
from trioqueue._config import QueueSettings
from trioqueue._keys import PartitionKeys
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._inflight import Entry
from trioqueue._worker._recovery import take_over
from trioqueue._worker._stats import ConsumerStats

__all__ = ["TAKEOVER_MAX", "FencedReader"]

log = logging.getLogger("trioqueue.worker.ordered")

# The most entries a new owner takes over in one step: far more than a partition's
# pending list holds (what its previous owners were running or holding back).
TAKEOVER_MAX = 100_000


class FencedReader:
    """Reads one owned partition while its lease token is current."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: QueueSettings,
        keys: PartitionKeys,
        stats: ConsumerStats,
        *,
        token: str,
        revoke: Callable[[float], None],
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._keys = keys
        self._stats = stats
        self._token = token
        self._revoke = revoke
        # Entries taken over from previous owners, in stream order, served before
        # anything new is read (None: not taken over yet).
        self._backlog: deque[Entry] | None = None

    def holding(self) -> bool:
        """Whether taken-over entries wait to be served."""
        return bool(self._backlog)

    def failed(self) -> None:
        """Nothing to remember: a failed fenced read hands the partition over."""

    async def read(self, count: int) -> list[Entry]:
        """Taken-over entries first, then new ones (fenced by the lease token)."""
        ctx, keys = self._ctx, self._keys
        if self._backlog is None:
            self._backlog = deque(await self._take_over())
        if self._backlog:
            return [self._backlog.popleft() for _ in range(min(count, len(self._backlog)))]
        fetch = scripts.ordered_fetch(keys, consumer=ctx.member_id, token=self._token, count=count)
        try:
            fetched = await scripts.run(ctx.redis, fetch)
        except Exception as exc:
            if is_connection_error(exc):
                # The read may have delivered entries whose reply never arrived:
                # pending here, unknown to us, older than whatever we would read next.
                # Only a new owner, running nothing yet, can tell them apart; give the
                # partition up (running jobs drain) and take it over afresh.
                log.warning(
                    "queue %s partition %d: a read failed (%s); handing the partition over "
                    "so that whatever it delivered runs in order",
                    keys.queue,
                    keys.partition,
                    exc,
                )
                self._revoke(trio.current_time() + ctx.worker.shutdown_grace)
            raise
        ctx.outage.succeeded()
        if fetched.entries:
            return [(entry_id, fields, 1) for entry_id, fields in fetched.entries]
        # Nothing new: block on a plain XREAD (it takes nothing) until an entry newer
        # than the newest one arrives, then read it through the fenced script.
        await ctx.redis.xread({keys.stream: fetched.newest}, count=1, block_ms=ctx.block_ms)
        return []

    async def _take_over(self) -> list[Entry]:
        """Claim everything pending in the partition, in stream order.

        As the new lease owner, every pending entry is stale: its consumer lost the
        partition (released it, died, or was paused past its lease). That includes
        entries under our own name, left by our own earlier ownership (our lease
        expired while we were starved, say). All are taken in one step: claiming in
        rounds would meet our own fresh claims first and stop short, and whatever was
        left behind would run after newer jobs of its key. For the same reason
        suspects are not set apart to run alone (suspect_at 0): that would run them
        ahead of older entries. ``max_deliveries`` still dead-letters a job that
        keeps killing its owners.
        """
        ctx, s, keys = self._ctx, self._settings, self._keys
        got = await take_over(
            ctx,
            keys,
            s,
            owner="",
            min_idle_ms=0,
            count=TAKEOVER_MAX,
            suspect_at=0,
            idle=False,
            own=True,
        )
        ctx.outage.succeeded()
        dead, lost = got.dead, got.lost
        if dead:
            self._stats.dead += dead
            log.error(
                "queue %s partition %d: dead-lettered %d jobs delivered more than "
                "max_deliveries=%d times",
                s.name,
                keys.partition,
                dead,
                s.max_deliveries,
            )
        if lost:
            self._stats.lost_by_trim += lost
            log.error(
                "queue %s partition %d: %d pending entries had been deleted from the stream "
                "by someone else (trimmed?); their jobs are lost",
                s.name,
                keys.partition,
                lost,
            )
        out: list[Entry] = [(c.entry_id, c.fields, c.deliveries) for c in got.claimed]
        if out:
            self._stats.reclaimed += len(out)
            log.info(
                "queue %s partition %d: took over %d pending jobs", s.name, keys.partition, len(out)
            )
        return out
