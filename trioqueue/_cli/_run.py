"""``trioqueue run``: the worker, until a signal or (with ``--burst``) until drained."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import attrs
import trio
import typer

from trioqueue._cli._boundary import CommandError
from trioqueue._cli._progress import BurstProgress
from trioqueue._cli._project import ConfigArg, load
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
) -> None:
    """Run the supervisor until SIGINT/SIGTERM (or, with --burst, until drained).

    The first signal stops fetching and lets running jobs finish within
    worker.shutdown_grace; a second signal cancels them at once (they are
    redelivered later, nothing is lost).
    """
    cfg, app = load(config)
    if metrics_port is not None:
        cfg = attrs.evolve(cfg, metrics=attrs.evolve(cfg.metrics, port=metrics_port))
    setup_logging(log_level)
    bar = BurstProgress() if burst else None
    try:
        # Built before the event loop: an unknown --queue is the user's error, said
        # in one line, not a traceback out of trio.run.
        sup = Supervisor(
            app,
            cfg,
            queues=queue,
            burst=burst,
            handle_signals=True,
            on_progress=None if bar is None else bar.advance,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if bar is not None:
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
