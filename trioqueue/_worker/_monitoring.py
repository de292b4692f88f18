"""What an operator watches and steers a worker through, started by the supervisor.

    monitoring (in the supervisor's loops nursery)
    ├── pause watch      _pause.py          reads the pause flags once per worker.block
    ├── rollback watch   _rollback.py       entries-added per partition, once per
    │                                       heartbeat_interval: lost writes reported
    ├── broker refresh   _broker_gauges.py  only with [metrics] port: backlog, delayed
    │                                       and dead counts once per metrics.refresh
    └── metrics server   _metrics_server.py only with [metrics] port: /metrics, /healthz

The metrics registry (``_metrics.py``) exists for every supervisor; with no port it
still counts (for ``Supervisor.registry``) but observes no per-job histograms.

Cancellation: every part is cancelled with the other loops, after the consumers
drained, so ``/healthz`` answers throughout a graceful shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import trio

from trioqueue._config import Config, QueueSettings
from trioqueue._worker._broker_gauges import BrokerRefresh
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._metrics import Sources, WorkerMetrics
from trioqueue._worker._metrics_server import MetricsServer, unhealthy
from trioqueue._worker._pause import Pauses, PauseWatch
from trioqueue._worker._rollback import RollbackWatch
from trioqueue._worker._stats import SupervisorStatistics

__all__ = ["Monitoring"]


class Monitoring:
    """The pause flags, the metrics and the loops and server that keep them."""

    def __init__(self, config: Config, queues: Iterable[str]) -> None:
        self._config = config
        self.pauses = Pauses(queues)
        self.metrics = WorkerMetrics(timed=config.metrics.port is not None)
        self.port: int | None = None
        self.server: MetricsServer | None = None
        self.rollback: RollbackWatch | None = None

    @property
    def lost_entries(self) -> int:
        """Entries the rollback watch found missing so far."""
        return 0 if self.rollback is None else self.rollback.lost

    async def start(
        self,
        ctx: WorkerContext,
        nursery: trio.Nursery,
        *,
        settings: Callable[[], Mapping[str, QueueSettings]],
        statistics: Callable[[], SupervisorStatistics],
        owned: Callable[[], Mapping[str, int]],
    ) -> None:
        """Read the pause flags, then start the loops and the server in ``nursery``
        (call before any consumer starts: none may read a paused queue)."""
        watch = PauseWatch(ctx.redis, ctx.prefix, self.pauses, interval=ctx.worker.block)
        await ctx.outage.call("read pause flags", watch.refresh)
        nursery.start_soon(watch.run)
        self.rollback = RollbackWatch(ctx, settings)
        nursery.start_soon(self.rollback.run)
        self.metrics.attach(
            Sources(
                statistics=statistics, owned=owned, paused=self.pauses.snapshot, outage=ctx.outage
            )
        )
        m = self._config.metrics
        if m.port is None:
            return
        refresh = BrokerRefresh(
            ctx.redis, ctx.prefix, settings, self.metrics.broker, interval=m.refresh
        )
        nursery.start_soon(refresh.run)
        ttl = ctx.worker.heartbeat_ttl

        def health() -> str | None:
            return unhealthy(ctx.outage, ctx.liveness, heartbeat_ttl=ttl)

        self.server = MetricsServer(self.metrics.registry, health, host=m.host, port=m.port)
        self.port = await nursery.start(self.server.run)
