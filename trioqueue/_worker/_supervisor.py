"""The supervisor: the root of a worker's task tree.

    Supervisor.run                   root cancel scope; a second signal cancels it
    ├── embedded broker              only without broker.url; stopped last
    ├── broker connection            one client for every task below
    ├── start-up                     partition counts, queue bounds, uptime, first beat
    └── loops nursery
        ├── heartbeat, scheduler, control listener, cron, signal listener,
        │   partition watch          (one module each)
        ├── monitoring               pause watch; with [metrics] port, the broker
        │                            refresh loop and the metrics server
        └── consumers nursery        a consumer per shared partition, an ordered
                                     queue (rebalance loop) per ordered queue

Cancellation: ``shutdown`` drains from the leaves up (consumers first; the loops,
the heartbeat included, are cancelled only once every consumer returned), then the
heartbeat key is deleted so peers take over anything left at once. ``cancel`` (or a
second signal) cancels the root scope: running jobs stay pending.

Error handling: a broker unreachable at start raises a ``BrokerError``; afterwards
every loop rides out outages (see ``_outage.py``); an error no part handles ends the
worker with it.

Resource handling: the connection and the embedded broker are closed when ``run``
returns, whatever the reason.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack

import attrs
import trio

from trioqueue._app import App
from trioqueue._client import Client
from trioqueue._config import Config, QueueSettings, WorkerConfig
from trioqueue._connection import connected
from trioqueue._cron import config_schedules
from trioqueue._embedded import default_data_dir, embedded_broker
from trioqueue._keys import member_key, members_key
from trioqueue._redact import redact_url
from trioqueue._worker._consumer import Consumer
from trioqueue._worker._context import Shutdown, WorkerContext
from trioqueue._worker._control import ControlListener
from trioqueue._worker._cron import Cron
from trioqueue._worker._heartbeat import Heartbeat
from trioqueue._worker._liveness import Liveness
from trioqueue._worker._monitoring import Monitoring
from trioqueue._worker._outage import OutageTracker
from trioqueue._worker._partitions import PartitionWatch
from trioqueue._worker._rebalance import OrderedQueue
from trioqueue._worker._scheduler import Scheduler
from trioqueue._worker._signals import listen_for_signals
from trioqueue._worker._start_up import only, start_up
from trioqueue._worker._stats import ConsumerStatistics, SupervisorStatistics

__all__ = ["Supervisor", "new_member_id"]

log = logging.getLogger("trioqueue.worker")


def new_member_id() -> str:
    """``host:pid:random``: unique per process start, readable in ``XINFO`` output."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Supervisor:
    """Runs an App's consumers and loops until stopped.

    ``config`` supplies broker, worker and per-queue settings (``App`` decorator
    values are defaults it overrides). Without ``config.broker.url`` an embedded
    server is started. ``queues`` limits the queues consumed (default: all with a
    handler). With ``burst=True`` it stops once every queue is drained.

    ``registry`` is the worker's own Prometheus ``CollectorRegistry``; with
    ``config.metrics.port`` set, ``run`` also serves it (and ``/healthz``) over HTTP.
    ``member_info`` is added to the heartbeat record (a parent's ``parent``, ``index``).
    """

    def __init__(
        self,
        app: App,
        config: Config | None = None,
        *,
        queues: list[str] | None = None,
        burst: bool = False,
        handle_signals: bool = False,
        on_progress: Callable[[int], None] | None = None,
        member_info: Mapping[str, object] | None = None,
    ) -> None:
        self.app = app
        self.member_info = dict(member_info or {})
        self.config = config if config is not None else Config(app="")
        self.prefix = self.config.broker.prefix
        self.burst = burst
        self.handle_signals = handle_signals
        self.member_id = new_member_id()
        self.settings: dict[str, QueueSettings] = only(app.settings(self.config), queues)
        self.schedules = [*app.schedules, *config_schedules(app, self.config.schedules)]
        self.url: str | None = None
        self._on_progress = on_progress
        self._shutdown = Shutdown()
        self._stop_event = trio.Event()
        self._started = trio.Event()
        self._root: trio.CancelScope | None = None
        self._ctx: WorkerContext | None = None
        self._consumers: dict[str, Consumer] = {}
        self._ordered: dict[str, OrderedQueue] = {}
        self._scheduler: Scheduler | None = None
        self._consumer_nursery: trio.Nursery | None = None
        self._monitoring = Monitoring(self.config, self.settings)
        self._monitoring.pauses.on_change = lambda queue: self._wake()
        self.registry = self._monitoring.metrics.registry

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics server listens on once started (None without one)."""
        return self._monitoring.port

    @property
    def _worker(self) -> WorkerConfig:
        return self.config.worker

    def is_stopping(self) -> bool:
        """Whether a graceful shutdown has begun (consumers stop fetching)."""
        return self._shutdown.requested

    def shutdown(self) -> None:
        """Stop gracefully: stop fetching, let running jobs finish within
        ``shutdown_grace``, acknowledge them, then return from ``run``."""
        grace = self._worker.shutdown_grace
        if self._shutdown.request(grace):
            self._stop_event.set()
            log.info("shutting down: draining in-flight jobs (up to %.0fs)", grace)
            self._wake()

    def _wake(self) -> None:
        """Make every consumer look at its state again (a shutdown, a pause)."""
        for consumer in self._consumers.values():
            consumer.wake()
        for ordered in self._ordered.values():
            ordered.signal()

    def cancel(self) -> None:
        """Stop at once: running jobs are cancelled and stay pending for redelivery."""
        if self._root is not None:
            log.warning("cancelling: running jobs are abandoned and will be redelivered")
            self._root.cancel()

    async def wait_started(self) -> None:
        """Wait until every consumer is attached."""
        await self._started.wait()

    def statistics(self) -> SupervisorStatistics:
        """A snapshot of what this worker's consumers have done so far."""
        consumers = {name: c.statistics() for name, c in self._consumers.items()}
        queues: dict[str, ConsumerStatistics] = {}
        for name in self.settings:
            if name in self._ordered:
                queues[name] = self._ordered[name].statistics()
            else:
                parts = [c.statistics() for c in self._consumers.values() if c.keys.queue == name]
                queues[name] = ConsumerStatistics.total(parts)
        return SupervisorStatistics(
            member_id=self.member_id,
            queues=queues,
            consumers=consumers,
            heartbeat_lapses=0 if self._ctx is None else self._ctx.liveness.lapses,
            lost_entries=self._monitoring.lost_entries,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until ``shutdown``/``cancel`` (or, in burst mode, until drained)."""
        if not self.settings:
            raise ValueError(f"app {self.app.name!r} has no handlers: nothing to run")
        with trio.CancelScope() as root:
            self._root = root
            async with AsyncExitStack() as stack:
                b = self.config.broker
                url = b.url
                if url is None:
                    data_dir = default_data_dir(self.config.base_dir, b.data_dir)
                    url = await stack.enter_async_context(
                        embedded_broker(data_dir, appendfsync=b.appendfsync)
                    )
                self.url = url
                # An attribute, not a local: a test harness may wrap the connection
                # before it is handed to every part.
                self.redis = await stack.enter_async_context(
                    connected(
                        url,
                        connect_timeout=b.connect_timeout,
                        socket_timeout=max(b.socket_timeout, self._worker.block + 5.0),
                        tls_ca_file=b.tls_ca_file,
                        client_name=f"trioqueue:{self.member_id}",
                    )
                )
                ctx = self._ctx = self._context(url)
                heartbeat = Heartbeat(
                    ctx, list(self.settings), self._lease_renewals, info=self.member_info
                )
                await self._start_up(ctx, heartbeat)
                await self._run_loops(ctx, heartbeat, task_status)
        log.info("worker %s stopped", self.member_id)

    def _context(self, url: str) -> WorkerContext:
        w = self._worker
        outage = OutageTracker(url)
        liveness = Liveness(
            outage, heartbeat_interval=w.heartbeat_interval, heartbeat_ttl=w.heartbeat_ttl
        )
        outage.on_recover.append(liveness.distrust)
        return WorkerContext(
            app=self.app,
            redis=self.redis,
            member_id=self.member_id,
            prefix=self.prefix,
            worker=w,
            settle_timeout=self.config.broker.socket_timeout,
            outage=outage,
            liveness=liveness,
            shutdown=self._shutdown,
            process_limiter=trio.CapacityLimiter(w.processes),
            burst=self.burst,
            progress=self._progress,
            poke_scheduler=self._poke_scheduler,
            pauses=self._monitoring.pauses,
            metrics=self._monitoring.metrics,
            history_ttl_ms=int(self.config.metrics.history_hours * 3_600_000),
        )

    def _progress(self, n: int) -> None:
        if self._on_progress is not None:
            self._on_progress(n)

    def _poke_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.poke()

    def _lease_renewals(self) -> list[Callable[[], Awaitable[None]]]:
        return [ordered.renew for ordered in self._ordered.values()]

    async def _start_up(self, ctx: WorkerContext, heartbeat: Heartbeat) -> None:
        await start_up(ctx, self.settings, heartbeat)
        log.info(
            "worker %s started: app %s, broker %s, queues %s",
            self.member_id,
            self.app.name,
            redact_url(self.url or ""),
            ", ".join(self.settings),
        )

    async def _run_loops(
        self, ctx: WorkerContext, heartbeat: Heartbeat, task_status: trio.TaskStatus[None]
    ) -> None:
        scheduler = self._scheduler = Scheduler(ctx, lambda: self.settings)
        async with trio.open_nursery() as loops:
            loops.start_soon(heartbeat.run)
            loops.start_soon(scheduler.run)
            loops.start_soon(ControlListener(ctx, self._cancel_job).run)
            if self.schedules:
                client = Client(self.app, ctx.redis, prefix=self.prefix, config=self.config, url="")
                loops.start_soon(Cron(ctx, self.schedules, client).run)
            if self.handle_signals:
                loops.start_soon(
                    functools.partial(
                        listen_for_signals,
                        stopping=self.is_stopping,
                        shutdown=self.shutdown,
                        cancel=self.cancel,
                    )
                )
            await self._monitoring.start(
                ctx,
                loops,
                settings=lambda: self.settings,
                statistics=self.statistics,
                owned=lambda: {n: len(q.owned) for n, q in self._ordered.items()},
            )
            async with trio.open_nursery() as consumers:
                self._consumer_nursery = consumers
                for name, settings in self.settings.items():
                    if settings.ordered:
                        ordered = OrderedQueue(ctx, settings)
                        self._ordered[name] = ordered
                        await consumers.start(ordered.run)
                    else:
                        for partition in range(settings.partitions):
                            await self._start_consumer(ctx, settings, partition)
                loops.start_soon(PartitionWatch(ctx, self.settings, self._partitions_grew).run)
                self._started.set()
                task_status.started()
                if not self.burst:
                    await self._stop_event.wait()
            if self.burst and not self._shutdown.requested:
                log.info("burst: all queues drained")
                self._shutdown.requested = True
            loops.cancel_scope.cancel()
        with trio.move_on_after(self.config.broker.connect_timeout) as scope:
            scope.shield = True
            # Peers may reclaim whatever we left pending right away (R13).
            try:
                await ctx.redis.delete([member_key(self.prefix, self.member_id)])
                await ctx.redis.zrem(members_key(self.prefix), [self.member_id])
            except Exception as exc:
                log.warning("could not remove heartbeat on shutdown: %s", exc)

    async def _start_consumer(
        self, ctx: WorkerContext, settings: QueueSettings, partition: int
    ) -> None:
        # A queue's concurrency is shared by its partitions (split evenly).
        share = max(1, settings.concurrency // settings.partitions)
        if partition == 0 and settings.concurrency < settings.partitions:
            log.warning(
                "queue %s: concurrency %d is lower than its %d partitions; each partition "
                "runs one job at a time, so up to %d jobs run at once in this worker",
                settings.name,
                settings.concurrency,
                settings.partitions,
                settings.partitions,
            )
        consumer = Consumer.shared(ctx, attrs.evolve(settings, concurrency=share), partition)
        name = settings.name if partition == 0 else f"{settings.name}:{partition}"
        self._consumers[name] = consumer
        assert self._consumer_nursery is not None
        await self._consumer_nursery.start(consumer.run)

    async def _partitions_grew(self, settings: QueueSettings, old: int) -> None:
        ordered = self._ordered.get(settings.name)
        if ordered is not None:
            ordered.partitions = settings.partitions
            ordered.wake()
        elif not self.burst:
            assert self._ctx is not None
            for partition in range(old, settings.partitions):
                await self._start_consumer(self._ctx, settings, partition)

    def _cancel_job(self, job_id: str) -> bool:
        owned = [c for q in self._ordered.values() for c in q.consumers()]
        return any(c.cancel_job(job_id) for c in [*self._consumers.values(), *owned])
