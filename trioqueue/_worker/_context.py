"""What every part of a worker is handed: the worker context and the shutdown state.

A part gets the context (and its own queue's settings), never the supervisor: it can
see the connection (on which it runs the typed script calls of ``_scripts``), its
member id and the limits, and nothing of its siblings. The context is frozen; the few
things that change while the worker runs (the outage tracker, the peers' trust, the
shutdown) are objects it holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import attrs
import trio

from trioqueue import _scripts as scripts
from trioqueue._app import App
from trioqueue._config import WorkerConfig
from trioqueue._connection import Redis
from trioqueue._worker._liveness import Liveness
from trioqueue._worker._metrics import WorkerMetrics
from trioqueue._worker._outage import OutageTracker
from trioqueue._worker._pause import Pauses

__all__ = ["Shutdown", "WorkerContext"]


@attrs.define(eq=False)
class Shutdown:
    """Whether a graceful stop began, and when running jobs are cancelled then."""

    requested: bool = False
    deadline: float = float("inf")

    def request(self, grace: float) -> bool:
        """Begin a graceful stop; return False if one had begun already."""
        if self.requested:
            return False
        self.requested = True
        self.deadline = trio.current_time() + grace
        return True


@attrs.frozen(eq=False)
class WorkerContext:
    """The immutable set of things every part of one worker shares.

    Attributes:
        app: the App whose handlers run.
        redis: the worker's broker client (``_redis.Redis``).
        member_id: this worker's ``host:pid:random`` name in consumer groups.
        prefix: the key prefix of every key.
        worker: the ``[worker]`` limits (heartbeat, block, grace, processes).
        settle_timeout: how long a final acknowledgement may take at shutdown.
        outage: reports broker outages once and times reconnects.
        liveness: whether peers' missing heartbeats may be trusted; lapse events.
        shutdown: the graceful-stop state.
        process_limiter: bounds child processes of the whole worker.
        burst: stop once every queue is drained.
        progress: called with the number of jobs each acknowledgement settled.
        poke_scheduler: wakes the scheduler loop (a retry was scheduled).
        pauses: which queues are paused (the fetchers check it before each read).
        metrics: the worker's Prometheus metrics (histograms per queue).
        history_ttl_ms: how long a minute of job history is kept (0: none written).
    """

    app: App
    redis: Redis
    member_id: str
    prefix: str
    worker: WorkerConfig
    settle_timeout: float
    outage: OutageTracker
    liveness: Liveness
    shutdown: Shutdown
    process_limiter: trio.CapacityLimiter
    burst: bool
    progress: Callable[[int], None]
    poke_scheduler: Callable[[], None]
    pauses: Pauses
    metrics: WorkerMetrics
    history_ttl_ms: int = 0

    @property
    def block_ms(self) -> int:
        """How long a blocking read waits, in milliseconds."""
        return max(1, int(self.worker.block * 1000))

    async def server_now(self) -> dt.datetime:
        """The server's clock (all due times and ticks use it, never ours)."""
        micros = await scripts.run(self.redis, scripts.server_time())
        return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.UTC)
