"""The scheduler loop: moves due delayed jobs and retries into their streams.

Each pass runs the promote script on every partition of every queue (due times come
from the server's clock), then sleeps until the earliest next due time, at most
``SCHEDULER_MAX_SLEEP``, or until poked (a retry was just scheduled here).

Cancellation: cancelled with the other loops once the consumers drained.

Error handling: a lost connection is reported to the outage tracker and the pass is
tried again with backoff; another error on one partition is logged and the pass goes
on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import trio

from trioqueue import _scripts as scripts
from trioqueue._broker_errors import is_connection_error
from trioqueue._config import QueueSettings
from trioqueue._keys import PartitionKeys
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._outage import repeat

__all__ = ["SCHEDULER_MAX_SLEEP", "Scheduler"]

log = logging.getLogger("trioqueue.worker.scheduler")

# The longest the scheduler sleeps: a job delayed by a peer (or a producer) is due
# at most this late.
SCHEDULER_MAX_SLEEP = 0.5
# Due jobs moved per partition and script call.
PROMOTE_BATCH = 500


class Scheduler:
    """Promotes due jobs of every queue this worker consumes."""

    def __init__(
        self, ctx: WorkerContext, settings: Callable[[], Mapping[str, QueueSettings]]
    ) -> None:
        self._ctx = ctx
        self._settings = settings  # read each pass: partition counts can grow
        self._poke = trio.Event()

    def poke(self) -> None:
        """Run a pass now (a retry was scheduled)."""
        self._poke.set()

    async def run(self) -> None:
        """Promote due jobs until cancelled."""

        async def step() -> float:
            wait = await self._pass()
            with trio.move_on_after(wait):
                await self._poke.wait()
            self._poke = trio.Event()
            return 0.0

        await repeat("scheduler", step, self._ctx.outage, max_wait=SCHEDULER_MAX_SLEEP)

    async def _pass(self) -> float:
        ctx = self._ctx
        wait = SCHEDULER_MAX_SLEEP
        every = [(n, p) for n, s in list(self._settings().items()) for p in range(s.partitions)]
        for name, partition in every:
            keys = PartitionKeys(ctx.prefix, name, partition)
            try:
                promoted = await scripts.run(ctx.redis, scripts.promote(keys, limit=PROMOTE_BATCH))
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                log.exception("scheduler: cannot promote due jobs of %s", name)
                continue
            if promoted.moved >= PROMOTE_BATCH:
                wait = 0.0
            elif promoted.wait_ms is not None:
                wait = min(wait, promoted.wait_ms / 1000)
        return wait
