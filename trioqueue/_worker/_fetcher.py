"""The fetcher: reads entries for the free slots only and dispatches them.

The loop waits for a free slot (and headroom: running plus unacknowledged entries
stay under ``2 x concurrency``), lets handlers finishing in the same round free
theirs, runs recovery when it is due, then reads at most as many entries as fit.
Work that does not fit stays in Redis, visible to ``status`` and to other workers.

Cancellation: the loop returns when the consumer stops fetching (a drain or a
revoked partition), or in burst mode once the partition is empty; it is cancelled
with the consumer otherwise.

Error handling: a lost connection is reported once per outage and retried with
backoff; a vanished consumer group is recreated; a key of the wrong type pauses the
queue (logged as an error); anything else is logged and retried after a second.

Pause: while the queue is paused (``_pause.py``) the loop waits as it does for a
free slot, and reads nothing, recovery included. What a shared queue's read already
blocked returns after the pause stays pending, for this consumer to run first once
the queue resumes; an ordered partition runs it (it must keep its order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import trio

from trioqueue._keys import GROUP, PartitionKeys
from trioqueue._scripts import LeaseLost
from trioqueue._worker._acker import Acker
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._inflight import Dispatch, Entry, InFlight
from trioqueue._worker._outage import repeat
from trioqueue._worker._recovery import Recovery

__all__ = ["Fetcher", "Reader", "SharedReader"]

log = logging.getLogger("trioqueue.worker.fetcher")


class Reader(Protocol):
    """How a consumer reads its partition (shared: a group read; ordered: fenced)."""

    async def read(self, count: int) -> Sequence[Entry]:
        """Up to ``count`` entries to run now."""

    def failed(self) -> None:
        """A read (or the recovery before it) failed."""


class SharedReader:
    """``XREADGROUP`` for a shared queue's partition."""

    def __init__(self, ctx: WorkerContext, keys: PartitionKeys, inflight: InFlight) -> None:
        self._ctx = ctx
        self._keys = keys
        self._inflight = inflight
        self._reread_own = False

    def failed(self) -> None:
        """A read cut off on our side may still have delivered entries to our PEL."""
        self._reread_own = True

    async def read(self, count: int) -> list[Entry]:
        """Our own pending entries unknown to us first (after a failed read), else new."""
        ctx, inflight, stream = self._ctx, self._inflight, self._keys.stream
        if self._reread_own:
            known = len(inflight.running) + len(inflight.unacked)
            res = await ctx.redis.xreadgroup(
                GROUP, ctx.member_id, {stream: "0"}, count=count + known
            )
            self._reread_own = False
            ctx.outage.succeeded()
            own: list[Entry] = [
                (entry_id, fields, 1)
                for entry_id, fields in res
                if entry_id not in inflight.running and entry_id not in inflight.unacked and fields
            ]
            if own:
                return own[:count]
        res = await ctx.redis.xreadgroup(
            GROUP, ctx.member_id, {stream: ">"}, count=count, block_ms=ctx.block_ms
        )
        ctx.outage.succeeded()
        new: list[Entry] = [(entry_id, fields or {}, 1) for entry_id, fields in res]
        return new


class Fetcher:
    """The fetch loop of one consumer."""

    def __init__(
        self,
        ctx: WorkerContext,
        keys: PartitionKeys,
        inflight: InFlight,
        reader: Reader,
        dispatch: Dispatch,
        acker: Acker,
        *,
        recovery: Recovery | None,
        holding: Callable[[], bool],
        stopping: Callable[[], bool],
        revoke: Callable[[float], None],
        ensure_group: Callable[[], Any],
    ) -> None:
        self._ctx = ctx
        self._keys = keys
        self._inflight = inflight
        self._reader = reader
        self._dispatch = dispatch
        self._acker = acker
        self._recovery = recovery
        self._holding = holding  # entries read but not dispatched yet (ordered queues)
        self._stopping = stopping
        self._revoke = revoke
        self._ensure_group = ensure_group

    async def run(self) -> None:
        """Fetch until the consumer stops fetching (or, in burst mode, is drained)."""
        what = f"read {self._keys.queue}"
        await repeat(what, self._step, self._ctx.outage, on_error=self._failed)

    async def _step(self) -> float | None:
        inflight, stopping, recovery = self._inflight, self._stopping, self._recovery
        paused, queue = self._ctx.pauses.paused, self._keys.queue
        while (
            inflight.free <= 0
            or inflight.headroom() <= 0
            or inflight.isolated is not None
            or paused(queue)
        ) and not stopping():
            if paused(queue) and self._ctx.burst:
                return None  # burst mode: a paused queue counts as done
            await inflight.wait_change()
        if stopping():
            return None
        # Let handlers that are finishing right now release capacity first, so a
        # busy consumer reads in batches instead of one entry per round trip. The
        # second pass makes sure jobs dispatched from the last read have started:
        # in one pass the scheduler may run this task first, and issuing the next
        # read delays their start by the client's per-command cost.
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        if paused(queue):
            return 0.0  # paused meanwhile: wait above, not in a read
        try:
            if recovery is not None:
                if recovery.due():
                    await recovery.recover()
                    if inflight.free <= 0 or inflight.isolated is not None:
                        return 0.0
                if recovery.suspects_left:
                    # Take no new work: once idle, a recovery may run a suspect alone.
                    if inflight.idle():
                        recovery.soon()
                    else:
                        with trio.move_on_at(recovery.next_due):
                            await inflight.wait_change()
                    return 0.0
            entries = await self._reader.read(min(inflight.free, inflight.headroom()))
        except Exception:
            self._reader.failed()
            raise
        if entries and paused(queue) and isinstance(self._reader, SharedReader):
            # Paused while the read was blocked: leave what it delivered pending here;
            # the first read after the resume reads this consumer's own entries first.
            self._reader.failed()
            return 0.0
        for entry_id, fields, deliveries in entries:
            self._dispatch(entry_id, fields, deliveries)
        if not entries and self._ctx.burst and await self._burst_done():
            return None
        return 0.0

    async def _burst_done(self) -> bool:
        if self._holding():
            return False
        await self._acker.flush()
        if self._inflight.running or self._inflight.unacked:
            return False
        redis = self._ctx.redis
        length = await redis.xlen(self._keys.stream)
        delayed = await redis.zcard(self._keys.delayed)
        return length == 0 and delayed == 0

    async def _failed(self, exc: Exception) -> float:
        queue = self._keys.queue
        if isinstance(exc, LeaseLost):
            log.warning(
                "queue %s partition %d: lease lost; stopping this partition",
                queue,
                self._keys.partition,
            )
            self._revoke(trio.current_time())
            return 0.0
        msg = str(exc)
        if "NOGROUP" in msg:
            log.warning(
                "queue %s: consumer group or stream vanished (deleted, or the server lost "
                "its data); recreating it",
                queue,
            )
            try:
                await self._ctx.outage.call("recreate consumer group", self._ensure_group)
            except Exception as again:
                # E.g. the key now holds another type: the next read reports that. This
                # error escaping would take the whole supervisor down with this queue.
                log.warning("queue %s: cannot recreate the consumer group: %s", queue, again)
                return 1.0
            return 0.0
        if "WRONGTYPE" in msg:
            log.error(
                "queue %s: key %s holds a non-stream value; another program uses this key "
                "prefix. Not consuming this queue until it is fixed.",
                queue,
                self._keys.stream,
            )
            # Wait out the pause, but let a shutdown end it at once.
            with trio.move_on_after(10):
                while not self._stopping():
                    await self._inflight.wait_change()
            return 0.0
        log.exception("queue %s: unexpected error while fetching", queue)
        return 1.0
