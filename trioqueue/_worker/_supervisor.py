"""The supervisor: one root nursery owning the broker connection and every loop.

Supervisor.run
├── embedded broker (only without a broker URL)
├── heartbeat loop   — keeps this member alive; notices when it lapsed
├── scheduler loop   — moves due delayed/retry jobs back into their streams
├── signal listener  — first SIGINT/SIGTERM drains, the second cancels
└── consumers        — one per queue (see _consumer.py); recovery runs in each
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import attrs
import orjson
import trio

from trioqueue._app import App
from trioqueue._config import Config, QueueSettings, WorkerConfig
from trioqueue._connection import Redis, connected, redact_url
from trioqueue._cron import CLAIM as CRON_CLAIM
from trioqueue._cron import Schedule, config_schedules
from trioqueue._embedded import default_data_dir, embedded_broker
from trioqueue._keys import PartitionKeys, control_channel, cron_key, member_key, members_key
from trioqueue._scripts import ALL as SCRIPTS
from trioqueue._worker._consumer import Consumer
from trioqueue._worker._ordered import OrderedQueue
from trioqueue._worker._outage import OutageTracker, reconnect_delay

__all__ = ["Supervisor"]

log = logging.getLogger("trioqueue")

# How long an orderly stop waits for in-flight acknowledgements at most, on top of
# the drain itself.
SCHEDULER_MAX_SLEEP = 0.5
# Members whose heartbeat expired this long ago are dropped from the members set.
MEMBERS_FORGET_MS = 3_600_000


def new_member_id() -> str:
    """``host:pid:random``: unique per process start, readable in ``XINFO`` output."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class _Scripts:
    """The registered scripts of one client, as attributes."""

    def __init__(self, redis: Redis) -> None:
        for name, text in SCRIPTS.items():
            setattr(self, name, redis.register_script(text))

    def __getattr__(self, name: str) -> Any:  # for mypy: attributes are set dynamically
        raise AttributeError(name)


class Supervisor:
    """Runs an App's consumers and loops until stopped.

    ``config`` supplies broker, worker and per-queue settings (``App`` decorator
    values are defaults it overrides). Without ``config.broker.url`` an embedded
    server is started. ``queues`` limits the queues consumed (default: all with a
    handler). With ``burst=True`` it stops once every queue is drained.
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
    ) -> None:
        self.app = app
        self.config = config if config is not None else Config(app="")
        self.prefix = self.config.broker.prefix
        self.burst = burst
        self.handle_signals = handle_signals
        self.member_id = new_member_id()
        self.settings: dict[str, QueueSettings] = app.settings(self.config)
        if queues is not None:
            unknown = sorted(set(queues) - set(self.settings))
            if unknown:
                raise ValueError(f"no handler registered for queue(s) {', '.join(unknown)}")
            self.settings = {q: self.settings[q] for q in queues}
        self.schedules = [*app.schedules, *config_schedules(app, self.config.schedules)]
        self.consumers: dict[str, Consumer] = {}
        self.ordered: dict[str, OrderedQueue] = {}
        self.process_limiter = trio.CapacityLimiter(self.worker.processes)
        self.url: str | None = None
        self.stopping = False
        self.drain_deadline = float("inf")
        self.outage = OutageTracker(None)
        self.outage.on_recover.append(self._distrust_peers)
        self._on_progress = on_progress
        self._started = trio.Event()
        self._stopped = trio.Event()
        self._root: trio.CancelScope | None = None
        self._scheduler_poke = trio.Event()
        self._lapse = trio.Event()
        self._trusted_at = 0.0
        self._beat_sent: float | None = None
        self._stop_event = trio.Event()
        self.heartbeat_lapses = 0

    # ----------------------------------------------------------------- public API

    @property
    def worker(self) -> WorkerConfig:
        return self.config.worker

    @property
    def block_ms(self) -> int:
        return max(1, int(self.worker.block * 1000))

    def is_stopping(self) -> bool:
        """Whether a graceful shutdown has begun (consumers stop fetching)."""
        return self.stopping

    def shutdown(self) -> None:
        """Stop gracefully: stop fetching, let running jobs finish within
        ``shutdown_grace``, acknowledge them, then return from ``run``."""
        if not self.stopping:
            self.stopping = True
            self.drain_deadline = trio.current_time() + self.worker.shutdown_grace
            self._stop_event.set()
            log.info(
                "shutting down: draining in-flight jobs (up to %.0fs)", self.worker.shutdown_grace
            )
            for consumer in self.consumers.values():
                consumer._signal()
            for ordered in self.ordered.values():
                ordered.signal()

    def cancel(self) -> None:
        """Stop at once: running jobs are cancelled and stay pending for redelivery."""
        if self._root is not None:
            log.warning("cancelling: running jobs are abandoned and will be redelivered")
            self._root.cancel()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until ``shutdown``/``cancel`` (or, in burst mode, until drained)."""
        if not self.settings:
            raise ValueError(f"app {self.app.name!r} has no handlers: nothing to run")
        with trio.CancelScope() as root:
            self._root = root
            async with AsyncExitStack() as stack:
                url = self.config.broker.url
                if url is None:
                    data_dir = default_data_dir(self.config.base_dir, self.config.broker.data_dir)
                    url = await stack.enter_async_context(
                        embedded_broker(data_dir, appendfsync=self.config.broker.appendfsync)
                    )
                self.url = url
                self.outage = OutageTracker(url)
                self.outage.on_recover.append(self._distrust_peers)
                b = self.config.broker
                self.redis = await stack.enter_async_context(
                    connected(
                        url,
                        connect_timeout=b.connect_timeout,
                        socket_timeout=max(b.socket_timeout, self.worker.block + 5.0),
                        tls_ca_file=b.tls_ca_file,
                        client_name=f"trioqueue:{self.member_id}",
                    )
                )
                self.scripts: Any = _Scripts(self.redis)
                await self._startup_checks()
                await self._run_loops(task_status)
        self._stopped.set()

    # ----------------------------------------------------------------- internals

    async def _startup_checks(self) -> None:
        try:
            await self._resolve_partitions()
            await store_queue_bounds(self.redis, self.prefix, self.settings.values())
        except Exception as exc:
            if "OOM" not in str(exc):
                raise
            # A full broker must still be drainable: start without storing settings.
            log.warning(
                "broker is out of memory: queue settings not stored; draining anyway (%s)", exc
            )
        info: Any = await self.redis.info("server")
        uptime = float(info.get("uptime_in_seconds", 1e9))
        ttl = self.worker.heartbeat_ttl
        if uptime < ttl:
            # The server just (re)started: heartbeats of live peers may not have been
            # renewed yet, so do not take their jobs until a full TTL has passed.
            self._trusted_at = trio.current_time() + (ttl - uptime)
        await self._beat()
        log.info(
            "worker %s started: app %s, broker %s, queues %s",
            self.member_id,
            self.app.name,
            redact_url(self.url or ""),
            ", ".join(self.settings),
        )

    async def _run_loops(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as loops:
            loops.start_soon(self._heartbeat_loop)
            loops.start_soon(self._scheduler_loop)
            loops.start_soon(self._control_loop)
            if self.schedules:
                loops.start_soon(self._cron_loop)
            if self.handle_signals:
                loops.start_soon(self._signal_loop)
            async with trio.open_nursery() as consumers:
                self._consumer_nursery = consumers
                for name, settings in self.settings.items():
                    if settings.ordered:
                        ordered = OrderedQueue(self, settings)
                        self.ordered[name] = ordered
                        await consumers.start(ordered.run)
                    else:
                        for partition in range(settings.partitions):
                            await self._start_consumer(settings, partition)
                loops.start_soon(self._partition_watch)
                self._started.set()
                task_status.started()
                if not self.burst:
                    await self._stop_event.wait()
            if self.burst and not self.stopping:
                log.info("burst: all queues drained")
                self.stopping = True
            loops.cancel_scope.cancel()
        with trio.move_on_after(self.config.broker.connect_timeout) as scope:
            scope.shield = True
            # Peers may reclaim whatever we left pending right away (R13).
            try:
                await self.redis.delete([member_key(self.prefix, self.member_id)])
                await self.redis.zrem(members_key(self.prefix), [self.member_id])
            except Exception as exc:
                log.warning("could not remove heartbeat on shutdown: %s", exc)
        log.info("worker %s stopped", self.member_id)

    async def _start_consumer(self, settings: QueueSettings, partition: int) -> None:
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
        consumer = Consumer(self, attrs.evolve(settings, concurrency=share), partition)
        name = settings.name if partition == 0 else f"{settings.name}:{partition}"
        self.consumers[name] = consumer
        await self._consumer_nursery.start(consumer.run)

    async def _partition_watch(self) -> None:
        """Pick up partition increases made while running (``trioqueue partitions``)."""
        while True:
            await trio.sleep(max(1.0, self.worker.heartbeat_interval * 2))
            try:
                stored = await self._stored_partitions()
            except Exception as exc:
                from trioqueue._connection import is_connection_error

                if not is_connection_error(exc):
                    raise
                continue
            for name, count in stored.items():
                settings = self.settings[name]
                if count <= settings.partitions:
                    continue
                log.warning(
                    "queue %s: partitions increased from %d to %d; consuming the new ones",
                    name,
                    settings.partitions,
                    count,
                )
                old = settings.partitions
                self.settings[name] = settings = attrs.evolve(settings, partitions=count)
                await store_queue_bounds(self.redis, self.prefix, [settings])
                if name in self.ordered:
                    self.ordered[name].partitions = count
                    self.ordered[name].wake()
                elif not self.burst:
                    for partition in range(old, count):
                        await self._start_consumer(settings, partition)

    async def _stored_partitions(self) -> dict[str, int]:
        out = {}
        for name in self.settings:
            raw = await self.redis.hget(PartitionKeys(self.prefix, name).meta, "partitions")
            if raw is not None:
                out[name] = int(raw)
        return out

    async def _resolve_partitions(self) -> None:
        """The partition count stored in Redis is the truth; store ours if none is."""
        stored = await self._stored_partitions()
        for name, settings in list(self.settings.items()):
            count = stored.get(name)
            if count is None:
                await self.redis.hsetnx(
                    PartitionKeys(self.prefix, name).meta, "partitions", settings.partitions
                )
                continue
            if count != settings.partitions:
                log.warning(
                    "queue %s: the config says %d partitions but the broker has %d; using %d "
                    "(change it with `trioqueue partitions CONFIG %s --increase-to N`)",
                    name,
                    settings.partitions,
                    count,
                    count,
                    name,
                )
                self.settings[name] = attrs.evolve(settings, partitions=count)

    async def _signal_loop(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not self.stopping:
                    log.info(
                        "received %s: graceful shutdown (send again to cancel at once)",
                        signal.Signals(signum).name,
                    )
                    self.shutdown()
                else:
                    self.cancel()

    def reconnect_delay(self) -> float:
        return reconnect_delay(min(self.outage.outages, 6))

    def progress(self, n: int) -> None:
        if self._on_progress is not None:
            self._on_progress(n)

    def poke_scheduler(self) -> None:
        self._scheduler_poke.set()

    def lapse_event(self) -> trio.Event:
        return self._lapse

    # ----------------------------------------------------------------- liveness

    def peers_trusted(self) -> bool:
        """Whether a missing heartbeat of a peer may be taken to mean it is dead."""
        # While our own link is down, and for a TTL after it recovers, peers cannot
        # have renewed their heartbeats or leases either: a server that was down or
        # paused longer than the TTL comes back with every heartbeat expired.
        now = trio.current_time()
        if self.outage.down or now < self._trusted_at:
            return False
        # A heartbeat still waiting for its reply means our writes stall right now (a
        # CLIENT PAUSE, a busy server, a cut link) and so do everyone's: reads still
        # answer meanwhile and show live peers' heartbeats expiring.
        sent = self._beat_sent
        return sent is None or now - sent < self.worker.heartbeat_interval / 2

    def _distrust_peers(self) -> None:
        self._trusted_at = trio.current_time() + self.worker.heartbeat_ttl

    async def _beat(self) -> bool:
        """Renew our heartbeat; return False if it had expired (we were presumed dead)."""
        ttl_ms = int(self.worker.heartbeat_ttl * 1000)
        info = orjson.dumps(
            {"id": self.member_id, "app": self.app.name, "queues": list(self.settings)}
        )
        key = member_key(self.prefix, self.member_id)
        alive: Any = await self.scripts.heartbeat(keys=[key], args=[info, ttl_ms])
        await self.scripts.members_touch(
            keys=[members_key(self.prefix)], args=[self.member_id, ttl_ms, MEMBERS_FORGET_MS]
        )
        return bool(int(alive))

    async def _heartbeat_loop(self) -> None:
        interval = self.worker.heartbeat_interval
        ttl = self.worker.heartbeat_ttl
        last_ok = trio.current_time()
        while True:
            await trio.sleep(interval)
            self._beat_sent = trio.current_time()
            try:
                alive = await self._beat()
                for ordered in self.ordered.values():
                    await ordered.renew()
            except Exception as exc:
                from trioqueue._connection import is_connection_error

                self._beat_sent = None
                if not is_connection_error(exc):
                    raise
                self.outage.failed("heartbeat", exc)
                continue
            self._beat_sent = None
            # Ends an outage even when no consumer reads (all busy, or none): until
            # then peers_trusted() refuses every recovery.
            self.outage.succeeded()
            now = trio.current_time()
            gap = now - last_ok
            last_ok = now
            if gap > ttl / 2:
                # We stalled (paused, starved, cut off): peers' heartbeats may look
                # stale to us for the same reason, so trust them again only later.
                self._distrust_peers()
            if not alive:
                self.heartbeat_lapses += 1
                log.warning(
                    "heartbeat lapsed (%.1fs without renewal, ttl %.1fs): peers may have "
                    "taken over our jobs; checking ownership of running jobs",
                    gap,
                    ttl,
                )
                self._lapse.set()
                self._lapse = trio.Event()

    # ----------------------------------------------------------------- control

    async def _control_loop(self) -> None:
        """Listen for remote cancel requests. Missed messages (e.g. during an outage)
        are caught up by the consumers' renewal, which checks cancel markers."""
        channel = control_channel(self.prefix)
        while True:
            try:
                async with self.redis.pubsub(
                    channels=[channel], ignore_subscribe_messages=True
                ) as pubsub:
                    async for message in pubsub:
                        self._on_control(message.get("data"))
            except Exception as exc:
                from trioqueue._connection import is_connection_error

                if not is_connection_error(exc):
                    log.exception("control listener failed; restarting it")
                await trio.sleep(self.reconnect_delay())

    def _on_control(self, data: Any) -> None:
        try:
            request = orjson.loads(data)
            job_id = str(request["cancel"])
        except Exception:
            log.warning("ignoring malformed control message %r", data)
            return
        owned = [o.consumer for q in self.ordered.values() for o in q.owned.values()]
        for consumer in [*self.consumers.values(), *owned]:
            if consumer.cancel_job(job_id):
                return

    # ----------------------------------------------------------------- cron

    async def server_now(self) -> dt.datetime:
        """The server's clock (all due times and ticks use it, never ours)."""
        sec, usec = await self.scripts.server_time(keys=[], args=[])
        return dt.datetime.fromtimestamp(int(sec) + int(usec) / 1e6, tz=dt.UTC)

    async def _cron_loop(self) -> None:
        from trioqueue._client import Client

        claim = self.redis.register_script(CRON_CLAIM)
        client = Client(self.app, self.redis, prefix=self.prefix, config=self.config, url="")
        seen: dict[str, dt.datetime] = {}
        async with trio.open_nursery() as runs:
            while True:
                try:
                    now = await self.server_now()
                    for s in self.schedules:
                        if self.stopping:
                            break  # draining: leave the next tick to a running peer
                        tick = s.due(now)
                        if tick is None or (s.name in seen and tick <= seen[s.name]):
                            continue
                        tick_ms = int(tick.timestamp() * 1000)
                        won: Any = await claim(keys=[cron_key(self.prefix, s.name)], args=[tick_ms])
                        seen[s.name] = tick
                        if int(won):
                            runs.start_soon(self._fire, s, tick_ms, client)
                    wait = min((s.next_tick(now) - now).total_seconds() for s in self.schedules)
                except Exception as exc:
                    from trioqueue._connection import is_connection_error

                    if not is_connection_error(exc):
                        raise
                    self.outage.failed("cron", exc)
                    wait = self.reconnect_delay()
                await trio.sleep(min(max(wait, 0.01), 1.0))

    async def _fire(self, schedule: Schedule, tick_ms: int, client: Any) -> None:
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
                await client.send(
                    msg, queue=schedule.queue, job_id=f"cron:{schedule.name}:{tick_ms}"
                )
        except Exception:
            log.exception("schedule %s failed at tick %d", schedule.name, tick_ms)

    # ----------------------------------------------------------------- scheduler

    async def _scheduler_loop(self) -> None:
        while True:
            wait = SCHEDULER_MAX_SLEEP
            every = [(n, p) for n, s in list(self.settings.items()) for p in range(s.partitions)]
            for name, partition in every:
                keys = PartitionKeys(self.prefix, name, partition)
                try:
                    moved, next_ms = await self.scripts.promote(
                        keys=[keys.stream, keys.delayed], args=[500]
                    )
                except Exception as exc:
                    from trioqueue._connection import is_connection_error

                    if not is_connection_error(exc):
                        log.exception("scheduler: cannot promote due jobs of %s", name)
                    else:
                        self.outage.failed("scheduler", exc)
                    continue
                if int(moved) >= 500:
                    wait = 0.0
                elif int(next_ms) >= 0:
                    wait = min(wait, int(next_ms) / 1000)
            with trio.move_on_after(wait):
                await self._scheduler_poke.wait()
            self._scheduler_poke = trio.Event()


async def store_queue_bounds(redis: Redis, prefix: str, settings: Any) -> None:
    """Write each queue's bounds to its meta hash so every producer enforces them."""
    for s in settings:
        # Every partition's meta hash: the send script reads the one of its hash tag.
        for partition in range(s.partitions):
            meta = PartitionKeys(prefix, s.name, partition).meta
            await redis.hset(
                meta,
                {"max_length": s.max_length or 0, "max_message_bytes": s.max_message_bytes},
            )
