"""What every command starts from: the config file, the app it names, a broker client.

Also the arguments every command shares, so that ``CONFIG``, ``QUEUE`` and ``--queue``
read the same in each command's help.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import typer

from trioqueue._app import App
from trioqueue._cli._boundary import CommandError, hide_password
from trioqueue._client import Client
from trioqueue._config import Config
from trioqueue._config_load import load_config
from trioqueue._cron import config_schedules
from trioqueue._embedded import default_data_dir, embedded_broker
from trioqueue._errors import ConfigError

ConfigArg = Annotated[
    Path, typer.Argument(help="Path of the TOML config file.", show_default=False)
]
QueueArg = Annotated[str, typer.Argument(help="Queue name.", show_default=False)]
QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", "-q", help="The job's queue (default: look in every queue)."),
]


def load(path: Path) -> tuple[Config, App]:
    """Load the config and import its app; ``CommandError`` naming each key path if not."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise CommandError(_invalid(path, exc.problems)) from exc
    hide_password(cfg.broker.url)
    app = import_app(cfg)
    problems = [
        f"queues.{name}: no handler is registered for this queue (app has: "
        f"{', '.join(app.queues) or 'none'})"
        for name in cfg.queues
        if name not in app.queues
    ]
    try:
        config_schedules(app, cfg.schedules)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise CommandError(_invalid(path, problems))
    return cfg, app


def _invalid(path: Path, problems: list[str]) -> str:
    return f"invalid config {path}:\n  " + "\n  ".join(problems)


def import_app(cfg: Config) -> App:
    """Import the ``module:attribute`` that ``cfg.app`` names; it must be an ``App``."""
    module_name, _, attr = cfg.app.partition(":")
    for extra in (str(cfg.base_dir), str(Path.cwd())):
        if extra not in sys.path:
            sys.path.insert(0, extra)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CommandError(
            f'app: cannot import module "{module_name}": {type(exc).__name__}: {exc}'
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise CommandError(f'app: "{cfg.app}" is {type(app).__name__}, expected a trioqueue.App')
    return app


@asynccontextmanager
async def broker_url(cfg: Config) -> AsyncIterator[str]:
    """The configured URL, or the embedded broker's (started for the duration if needed)."""
    if cfg.broker.url is not None:
        yield cfg.broker.url
        return
    data_dir = default_data_dir(cfg.base_dir, cfg.broker.data_dir)
    async with embedded_broker(data_dir, appendfsync=cfg.broker.appendfsync) as url:
        # A long data_dir path makes the embedded broker listen on TCP with a password.
        hide_password(url)
        yield url


@asynccontextmanager
async def client_for(cfg: Config, app: App) -> AsyncIterator[Client]:
    """A client connected to the project's broker, with the config's broker settings."""
    async with broker_url(cfg) as url:
        b = cfg.broker
        async with app.connect(
            url,
            prefix=b.prefix,
            config=cfg,
            connect_timeout=b.connect_timeout,
            socket_timeout=b.socket_timeout,
            tls_ca_file=b.tls_ca_file,
        ) as client:
            yield client
