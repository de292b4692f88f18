"""``trioqueue run``: the worker, until a signal or (with ``--burst``) until drained.

With ``--workers N`` (or ``[worker] workers``) it is the parent of N worker
processes instead (``_workers.py``); each of those runs this command again, with
the hidden ``--parent-fd`` that makes it a child.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import attrs
import trio
import typer

from trioqueue._cli._boundary import CommandError
from trioqueue._cli._progress import BurstProgress
from trioqueue._cli._project import ConfigArg, load
from trioqueue._cli._workers import report_failure, run_parent
from trioqueue._parent._child import run_child
from trioqueue._parent._link import ParentLink
from trioqueue._worker._supervisor import Supervisor


def run(
    config: ConfigArg,
    burst: Annotated[bool, typer.Option("--burst", help="Drain all queues, then exit 0.")] = False,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Consume only this queue (repeatable)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve /metrics and /healthz on this port (overrides [metrics] port).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Run N worker processes under one parent supervisor (overrides [worker] workers).",
        ),
    ] = None,
    parent_fd: Annotated[int | None, typer.Option("--parent-fd", hidden=True)] = None,
    worker_index: Annotated[int, typer.Option("--worker-index", hidden=True)] = 0,
) -> None:
    """Run the supervisor until SIGINT/SIGTERM (or, with --burst, until drained).

    The first signal stops fetching and lets running jobs finish within
    worker.shutdown_grace; a second signal cancels them at once (they are
    redelivered later, nothing is lost). With --workers N, a parent runs N
    worker processes and passes the signals on to them.
    """
    link = None if parent_fd is None else ParentLink(parent_fd, worker_index)
    try:
        _run(config, burst, queue, log_level, metrics_port, workers, link)
    except BaseException as exc:
        if link is not None:
            report_failure(link, exc)
        raise


def _run(
    config: Path,
    burst: bool,
    queue: list[str] | None,
    log_level: str,
    metrics_port: int | None,
    workers: int | None,
    link: ParentLink | None,
) -> None:
    cfg, app = load(config)
    if metrics_port is not None:
        cfg = attrs.evolve(cfg, metrics=attrs.evolve(cfg.metrics, port=metrics_port))
    setup_logging(log_level)
    workers = workers if workers is not None else cfg.worker.workers
    bar = BurstProgress() if burst and link is None and workers is None else None
    try:
        # Built before the event loop: an unknown --queue is the user's error, said
        # in one line, not a traceback out of trio.run. A parent builds one too, to
        # find the errors its children would, before it starts any.
        sup = Supervisor(
            app,
            cfg,
            queues=queue,
            burst=burst,
            handle_signals=link is None,
            on_progress=None if bar is None else bar.advance,
            member_info=None if link is None else {"parent": link.parent_id, "index": link.index},
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if link is None and workers is not None:
        run_parent(
            config,
            cfg,
            workers=workers,
            burst=burst,
            queues=queue,
            log_level=log_level,
            metrics_port=cfg.metrics.port,
        )
    elif link is not None:
        trio.run(run_child, sup, link)
    elif bar is not None:
        trio.run(bar.run, sup, cfg)
    else:
        trio.run(sup.run)


def setup_logging(level: str) -> None:
    """Log every ``trioqueue.*`` logger to stderr, each line naming its logger."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
