"""``trioqueue dashboard``: serve the web dashboard on Hypercorn's Trio worker."""

from __future__ import annotations

import os
from typing import Annotated

import trio
import typer

from trioqueue._cli._boundary import CommandError
from trioqueue._cli._console import err
from trioqueue._cli._project import ConfigArg, load
from trioqueue._cli._run import setup_logging

INSTALL_HINT = "the dashboard needs its extra: pip install 'trioqueue[dashboard]'"


def dashboard(
    config: ConfigArg,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: [dashboard] host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port to listen on (default: [dashboard] port)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Secret every request must carry (else $TRIOQUEUE_DASHBOARD_TOKEN, else "
            "[dashboard] token); required to listen on anything but loopback.",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(min=0.05, help="Seconds between two snapshots of the broker."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Serve the web dashboard: queues, partitions, workers, jobs and dead letters."""
    cfg, app = load(config)
    try:
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.trio import serve

        from trioqueue.dashboard import TOKEN_ENV, Dashboard
        from trioqueue.dashboard._security import is_loopback
    except ImportError as exc:
        raise CommandError(f"{INSTALL_HINT} ({exc})") from exc
    d = cfg.dashboard
    bind_host = host or d.host
    secret = token or os.environ.get(TOKEN_ENV) or d.token
    if not is_loopback(bind_host) and not secret:
        raise CommandError(
            f"refusing to serve the dashboard on {bind_host} without a token: pass --token, "
            f"set {TOKEN_ENV} or [dashboard] token (or listen on 127.0.0.1)"
        )
    if secret is not None and len(secret) < 16:
        raise CommandError("the dashboard token must be at least 16 characters long")
    setup_logging(log_level)
    dash = Dashboard(cfg, app=app, token=secret, interval=interval)
    hc = HypercornConfig()
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    hc.bind = [f"{shown}:{port if port is not None else d.port}"]
    hc.accesslog = None
    err.print(f"dashboard on http://{hc.bind[0]}/", highlight=False)
    trio.run(serve, dash.asgi, hc)  # type: ignore[arg-type]  # Starlette is an ASGI app
