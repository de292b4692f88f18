"""trioqueue: typed background jobs on Trio, brokered by Redis Streams.

Define attrs message types and handlers on an ``App``, send with ``App.connect``,
run workers with ``trioqueue run config.toml``.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from trioqueue._app import App
from trioqueue._client import Client
from trioqueue._config import (
    Backoff,
    BrokerConfig,
    Config,
    DashboardConfig,
    MetricsConfig,
    QueueOptions,
    QueueSettings,
    WorkerConfig,
)
from trioqueue._config_load import load_config
from trioqueue._context import JobContext, current_job, report_progress
from trioqueue._deadletters import DeadLetter
from trioqueue._errors import (
    BatchFailed,
    BrokerAuthError,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    JobCancelled,
    JobFailed,
    MessageTooLarge,
    NotReplicated,
    QueueFull,
    Reject,
    Retry,
    TrioqueueError,
    UnknownMessageType,
)
from trioqueue._events import EventKind, JobEvent
from trioqueue._exports import fixup_module_metadata as _fixup_module_metadata
from trioqueue._handler import Handler
from trioqueue._job import Job, JobState, JobStatus
from trioqueue._worker._stats import ConsumerStatistics, SupervisorStatistics
from trioqueue._worker._supervisor import Supervisor

__version__ = "0.1.0"

__all__ = [
    "App",
    "Backoff",
    "BatchFailed",
    "BrokerAuthError",
    "BrokerConfig",
    "BrokerError",
    "BrokerUnavailable",
    "Client",
    "Config",
    "ConfigError",
    "ConsumerStatistics",
    "DashboardConfig",
    "DeadLetter",
    "EventKind",
    "Handler",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobState",
    "JobStatus",
    "MessageTooLarge",
    "MetricsConfig",
    "NotReplicated",
    "QueueFull",
    "QueueOptions",
    "QueueSettings",
    "Reject",
    "Retry",
    "Supervisor",
    "SupervisorStatistics",
    "SyncClient",
    "TrioqueueError",
    "UnknownMessageType",
    "WorkerConfig",
    "__version__",
    "current_job",
    "load_config",
    "report_progress",
]

# Tracebacks, reprs and docs say trioqueue.QueueFull, not trioqueue._errors.QueueFull.
_fixup_module_metadata(__name__, globals())

if _TYPE_CHECKING:
    from trioqueue._sync_client import SyncClient


def __getattr__(name: str) -> _Any:
    # SyncClient is imported on first use: it brings redis-py, which a worker, the CLI
    # and the Trio client never need (a third of the package's import time).
    if name == "SyncClient":
        from trioqueue._sync_client import SyncClient

        _fixup_module_metadata(__name__, {"SyncClient": SyncClient})
        globals()["SyncClient"] = SyncClient
        return SyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
