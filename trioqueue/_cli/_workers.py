"""``trioqueue run --workers N``: the parent supervisor, and the child's side of it.

The parent validates everything a child would (config, app, queues) before it
starts any, so a bad config exits 1 at once; it owns the embedded broker when there
is one and hands its URL to the children in ``TRIOQUEUE_BROKER_URL``. A child is
``python -m trioqueue run CONFIG --parent-fd FD --worker-index I`` (the two options
are internal and hidden from ``--help``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from trioqueue._cli._boundary import CommandError, exit_status
from trioqueue._cli._console import err
from trioqueue._cli._project import broker_url
from trioqueue._config import Config
from trioqueue._connection import sole_exception
from trioqueue._errors import BrokerAuthError, ConfigError
from trioqueue._parent._link import ParentLink
from trioqueue._parent._parent import Parent, WorkersFailed

__all__ = ["report_failure", "run_parent"]


def run_parent(
    config_path: Path,
    cfg: Config,
    *,
    workers: int,
    burst: bool,
    queues: list[str] | None,
    log_level: str,
    metrics_port: int | None,
) -> None:
    """Run ``workers`` worker processes until a signal (or, with ``burst``, drained)."""
    path = str(config_path.resolve())

    def child_args(index: int, fd: int) -> list[str]:
        args = [sys.executable, "-m", "trioqueue", "run", path, "--log-level", log_level]
        args += ["--parent-fd", str(fd), "--worker-index", str(index)]
        for queue in queues or ():
            args += ["--queue", queue]
        if burst:
            args.append("--burst")
        if metrics_port is not None:
            # The parent serves the configured port; each child a free one it reports.
            args += ["--metrics-port", "0"]
        return args

    parent = Parent(cfg, child_args, workers=workers, burst=burst, metrics_port=metrics_port)

    async def main() -> None:
        async with broker_url(cfg) as url:
            await parent.run(url)

    try:
        trio.run(main)
    except WorkersFailed as exc:
        raise CommandError(exc.reason) from None
    if burst:
        d = parent.drained
        err.print(
            f"drained: {d['succeeded']} succeeded, {d['retried']} retried, "
            f"{d['dead']} dead-lettered ({workers} workers)"
        )


def report_failure(link: ParentLink, exc: BaseException) -> None:
    """Tell the parent when ``exc`` is an error a restart cannot fix."""
    inner = sole_exception(exc) if isinstance(exc, BaseExceptionGroup) else exc
    if isinstance(inner, CommandError | ConfigError | BrokerAuthError):
        verdict = exit_status(inner)
        link.report("fatal", message=verdict[0] if verdict else str(inner))
