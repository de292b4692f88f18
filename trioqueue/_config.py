"""Configuration: the attrs model of a ``config.toml`` (``_config_load.py`` reads one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs

__all__ = [
    "Backoff",
    "BrokerConfig",
    "Config",
    "DashboardConfig",
    "MetricsConfig",
    "QueueOptions",
    "QueueSettings",
    "ScheduleConfig",
    "WorkerConfig",
]

MiB = 1024 * 1024


@attrs.frozen
class Backoff:
    """Exponential backoff between attempts: ``initial * factor**(attempt-1)``, capped.

    ``jitter`` is a fraction: 0.1 spreads each delay uniformly over +-10%.
    """

    initial: float = 1.0
    factor: float = 2.0
    max: float = 300.0
    jitter: float = 0.1

    def delay(self, attempt: int, rand: float = 0.5) -> float:
        """Seconds to wait before attempt ``attempt + 1``; ``rand`` is uniform in [0, 1)."""
        try:
            base = min(self.max, self.initial * self.factor ** max(0, attempt - 1))
        except OverflowError:
            # A high attempt number with factor > 1 overflows a float; it is past the cap.
            base = self.max
        return max(0.0, base * (1.0 + self.jitter * (2.0 * rand - 1.0)))


@attrs.frozen
class QueueOptions:
    """Per-queue settings as given by a decorator or a ``[queues.NAME]`` table.

    ``None`` means "not set here"; see ``QueueSettings`` for the defaults.
    """

    concurrency: int | None = None
    retries: int | None = None
    timeout: float | None = None
    visibility_timeout: float | None = None
    max_deliveries: int | None = None
    max_length: int | None = None
    max_message_bytes: int | None = None
    result_ttl: float | None = None
    backoff: Backoff | None = None
    partitions: int | None = None
    ordered: bool | None = None
    events: bool | None = None
    events_max_length: int | None = None


@attrs.frozen
class QueueSettings:
    """The resolved settings of one queue (defaults < decorator < config file)."""

    name: str
    concurrency: int = 32
    retries: int = 3
    timeout: float | None = None
    visibility_timeout: float = 60.0
    max_deliveries: int = 10
    max_length: int | None = None
    max_message_bytes: int = MiB
    result_ttl: float = 3600.0
    backoff: Backoff = Backoff()
    partitions: int = 1
    ordered: bool = False
    # Whether job state changes are written to the partition's event stream, and
    # about how many events each partition's stream keeps (XADD MAXLEN ~).
    events: bool = False
    events_max_length: int = 5000

    @classmethod
    def resolve(cls, name: str, *layers: QueueOptions, concurrency: int) -> QueueSettings:
        """Apply ``layers`` in order over the defaults (later layers win)."""
        values: dict[str, Any] = {"concurrency": concurrency}
        for layer in layers:
            for field in attrs.fields(QueueOptions):
                value = getattr(layer, field.name)
                if value is not None:
                    values[field.name] = value
        return cls(name=name, **values)


@attrs.frozen
class BrokerConfig:
    """``[broker]``: where the Redis/Valkey server is; absent ``url`` = embedded server.

    ``wait_replicas`` (default 0) makes every send wait until that many replicas have
    it, up to ``wait_timeout`` seconds, else raise ``NotReplicated``;
    ``wait_local_fsync`` also waits for the primary's AOF fsync (``WAITAOF``: Redis
    7.2+ or Valkey, with ``appendonly yes``). Workers' acknowledgements never wait.
    """

    url: str | None = None
    prefix: str = "tq"
    data_dir: str | None = None
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    connect_timeout: float = 5.0
    socket_timeout: float = 30.0
    tls_ca_file: str | None = None
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    wait_local_fsync: bool = False


@attrs.frozen
class WorkerConfig:
    """``[worker]``: defaults for the supervisor and its handlers.

    ``processes`` sizes the process pool of ``run_in="process"`` handlers; ``workers``
    is how many worker processes ``trioqueue run`` starts (None: the worker runs in
    the ``run`` process itself; N: a parent supervisor runs N of them, like
    ``trioqueue run --workers N``).
    """

    concurrency: int = 32
    shutdown_grace: float = 30.0
    heartbeat_interval: float = 2.0
    heartbeat_ttl: float = 10.0
    block: float = 1.0
    processes: int = 4
    workers: int | None = None


@attrs.frozen
class MetricsConfig:
    """``[metrics]``: the worker's Prometheus ``/metrics`` and ``/healthz`` endpoint.

    Without ``port`` no server runs (``trioqueue run --metrics-port N`` sets one);
    ``port = 0`` picks a free port (see ``Supervisor.metrics_port``). ``refresh`` is how
    often, in seconds, the broker-side gauges (backlog, delayed, dead) are read.
    ``history_hours``: how long the per-minute job history kept in the broker lives
    (0 = none is written).
    """

    port: int | None = None
    host: str = "127.0.0.1"
    refresh: float = 15.0
    history_hours: float = 24.0


@attrs.frozen
class DashboardConfig:
    """``[dashboard]``: the web dashboard of ``trioqueue dashboard``.

    ``host`` and ``port`` are where it listens (the command's ``--host`` and ``--port``
    win); ``token`` is the secret every request must carry once set (required to bind
    anywhere but loopback; ``TRIOQUEUE_DASHBOARD_TOKEN`` and ``--token`` win over it);
    ``interval`` is how often, in seconds, one snapshot of the broker is taken for
    every page and API call.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = attrs.field(default=None, repr=False)
    interval: float = 5.0


@attrs.frozen
class ScheduleConfig:
    """A ``[[schedules]]`` entry: send ``message`` to ``queue`` on a schedule.

    ``cron`` (5 fields, in ``timezone``) or ``every`` (seconds). ``type`` names the
    message type when the queue has several handlers.
    """

    queue: str
    message: dict[str, Any] = attrs.Factory(dict)
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    type: str | None = None
    name: str | None = None


@attrs.frozen
class Config:
    """A whole ``config.toml``."""

    app: str
    broker: BrokerConfig = BrokerConfig()
    worker: WorkerConfig = WorkerConfig()
    metrics: MetricsConfig = MetricsConfig()
    dashboard: DashboardConfig = DashboardConfig()
    queues: dict[str, QueueOptions] = attrs.Factory(dict)
    schedules: list[ScheduleConfig] = attrs.Factory(list)
    source: Path | None = attrs.field(default=None, eq=False)

    def queue_options(self, name: str) -> QueueOptions:
        return self.queues.get(name, QueueOptions())

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the config are resolved against."""
        return self.source.parent if self.source is not None else Path.cwd()
