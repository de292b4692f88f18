"""The cron loop: claims each due tick of every schedule once and fires it.

Every worker computes the latest due tick from the server's clock and claims it
with a compare-and-set script on ``<prefix>:cron:<name>``; only the claimant fires
it, by sending the schedule's message with a job id naming the tick (so a send
retried after a lost reply is not doubled). A schedule with a target calls it first
(a coroutine function is awaited, a plain one runs in a thread) to build the message.

Cancellation: a drain stops claiming ticks (a running peer fires the next one);
firings in flight are cancelled with the loop.

Error handling: a lost connection is reported to the outage tracker and retried with
backoff; a failing target or send is logged and the tick is not retried.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import trio

from trioqueue import _scripts as scripts
from trioqueue._cron import Schedule
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._outage import repeat

__all__ = ["Cron"]

log = logging.getLogger("trioqueue.worker.cron")


class Cron:
    """Fires ``schedules`` through ``client`` (a ``Client`` on the worker's connection)."""

    def __init__(self, ctx: WorkerContext, schedules: Sequence[Schedule], client: Any) -> None:
        self._ctx = ctx
        self._schedules = list(schedules)
        self._client = client

    async def run(self) -> None:
        """Claim and fire ticks until cancelled."""
        ctx = self._ctx
        seen: dict[str, dt.datetime] = {}
        async with trio.open_nursery() as runs:

            async def step() -> float:
                now = await ctx.server_now()
                for s in self._schedules:
                    if ctx.shutdown.requested:
                        break  # draining: leave the next tick to a running peer
                    tick = s.due(now)
                    if tick is None or (s.name in seen and tick <= seen[s.name]):
                        continue
                    tick_ms = int(tick.timestamp() * 1000)
                    claim = scripts.cron_claim(ctx.prefix, schedule=s.name, tick_ms=tick_ms)
                    won = await scripts.run(ctx.redis, claim)
                    seen[s.name] = tick
                    if won:
                        runs.start_soon(self._fire, s, tick_ms)
                wait = min((s.next_tick(now) - now).total_seconds() for s in self._schedules)
                return min(max(wait, 0.01), 1.0)

            await repeat("cron", step, ctx.outage, max_wait=1.0)

    async def _fire(self, schedule: Schedule, tick_ms: int) -> None:
        try:
            msg = schedule.message
            if schedule.target is not None:
                fn = schedule.target
                msg = (
                    await fn()
                    if inspect.iscoroutinefunction(fn)
                    else await trio.to_thread.run_sync(fn)
                )
            if msg is not None:
                # The tick in the job id makes the send idempotent per tick.
                await self._client.send(
                    msg, queue=schedule.queue, job_id=f"cron:{schedule.name}:{tick_ms}"
                )
        except Exception:
            log.exception("schedule %s failed at tick %d", schedule.name, tick_ms)
