"""The broker refresh loop: reads the broker-side gauges once per ``metrics.refresh``.

Per partition of each queue this worker consumes, ``XLEN`` of the stream (backlog),
``ZCARD`` of the delayed set and ``XLEN`` of the dead letters, into the figures the
metrics collector renders (``_metrics.BrokerFigures``). A scrape never talks to the
broker: however often Prometheus scrapes, the broker sees these reads once per
interval.

Cancellation: cancelled with the other loops.

Error handling: the loop retries silently after a lost connection (the other loops
report outages; the figures keep their last values meanwhile); any other error (a key
of the wrong type, say: the fetcher reports that one) is logged and the figures are
read again at the next interval: metrics never end the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from trioqueue._config import QueueSettings
from trioqueue._connection import Redis
from trioqueue._keys import PartitionKeys
from trioqueue._worker._metrics import BrokerFigures
from trioqueue._worker._outage import repeat

__all__ = ["BrokerRefresh"]

log = logging.getLogger("trioqueue.worker.metrics")


class BrokerRefresh:
    """Fills ``figures`` from the broker every ``interval`` seconds."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        settings: Callable[[], Mapping[str, QueueSettings]],
        figures: BrokerFigures,
        *,
        interval: float,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._settings = settings  # read each time: partition counts grow while running
        self._figures = figures
        self._interval = interval

    async def refresh(self) -> None:
        """Read every figure now."""
        redis, f = self._redis, self._figures
        for name, s in self._settings().items():
            backlog: dict[int, int] = {}
            delayed = dead = 0
            for partition in range(s.partitions):
                keys = PartitionKeys(self._prefix, name, partition)
                backlog[partition] = int(await redis.xlen(keys.stream))
                delayed += int(await redis.zcard(keys.delayed))
                dead += int(await redis.xlen(keys.dead))
            f.backlog[name], f.delayed[name], f.dead[name] = backlog, delayed, dead

    async def run(self) -> None:
        """Refresh now, then every interval, until cancelled."""

        async def step() -> float:
            await self.refresh()
            return self._interval

        async def failed(exc: Exception) -> float:
            log.warning("could not read the broker-side metrics: %s: %s", type(exc).__name__, exc)
            return self._interval

        await repeat("metrics refresh", step, None, on_error=failed, max_wait=self._interval)
