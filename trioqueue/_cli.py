"""The ``trioqueue`` command line: run workers, send jobs, check a config."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import attrs
import orjson
import trio
import typer
from rich.console import Console
from rich.table import Table

from trioqueue._app import App
from trioqueue._client import Client
from trioqueue._config import Config, load_config
from trioqueue._connection import redact, redact_url, sole_exception
from trioqueue._converter import describe_structure_error
from trioqueue._cron import config_schedules
from trioqueue._embedded import default_data_dir, embedded_broker, find_server_binary
from trioqueue._errors import BrokerError, ConfigError, TrioqueueError

T = TypeVar("T")

cli = typer.Typer(
    name="trioqueue",
    help="Typed background jobs on Trio, brokered by Redis Streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

ConfigArg = Annotated[
    Path, typer.Argument(help="Path of the TOML config file.", show_default=False)
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code`` (no traceback)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def load(path: Path) -> tuple[Config, App]:
    """Load the config and import its app; exit 1 with the key path on any error."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        lines = "\n  ".join(exc.problems)
        fail(f"invalid config {path}:\n  {lines}")
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
        fail(f"invalid config {path}:\n  " + "\n  ".join(problems))
    return cfg, app


def import_app(cfg: Config) -> App:
    module_name, _, attr = cfg.app.partition(":")
    for extra in (str(cfg.base_dir), str(Path.cwd())):
        if extra not in sys.path:
            sys.path.insert(0, extra)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        fail(f'app: cannot import module "{module_name}": {type(exc).__name__}: {exc}')
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        fail(f'app: "{cfg.app}" is {type(app).__name__}, expected a trioqueue.App')
    return app


@asynccontextmanager
async def broker_url(cfg: Config) -> AsyncIterator[str]:
    """The configured URL, or the embedded broker's (started for the duration if needed)."""
    if cfg.broker.url is not None:
        yield cfg.broker.url
        return
    data_dir = default_data_dir(cfg.base_dir, cfg.broker.data_dir)
    async with embedded_broker(data_dir, appendfsync=cfg.broker.appendfsync) as url:
        yield url


@asynccontextmanager
async def client_for(cfg: Config, app: App) -> AsyncIterator[Client]:
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


def run_async(cfg: Config, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` under Trio; turn trioqueue errors into one clean line and exit 1."""
    try:
        return trio.run(fn)
    except TrioqueueError as exc:
        fail(redact(str(exc), cfg.broker.url))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BaseExceptionGroup as group:
        # Errors from inside a nursery arrive wrapped; show ours as one line too.
        inner = sole_exception(group)
        if isinstance(inner, TrioqueueError):
            fail(redact(str(inner), cfg.broker.url))
        if isinstance(inner, KeyboardInterrupt):
            fail("interrupted", 130)
        raise


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # coredis reports each script (re)load at INFO; it is routine, not news.
    logging.getLogger("coredis").setLevel(logging.WARNING)


@cli.command()
def run(
    config: ConfigArg,
    burst: Annotated[bool, typer.Option("--burst", help="Drain all queues, then exit 0.")] = False,
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", "-q", help="Consume only this queue (repeatable)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Run the supervisor until SIGINT/SIGTERM (or, with --burst, until drained).

    The first signal stops fetching and lets running jobs finish within
    worker.shutdown_grace; a second signal cancels them at once (they are
    redelivered later, nothing is lost).
    """
    from trioqueue._worker._supervisor import Supervisor

    cfg, app = load(config)
    setup_logging(log_level)
    if burst:
        from trioqueue._cli_progress import run_burst

        run_async(cfg, lambda: run_burst(app, cfg, queue))
        return
    try:
        sup = Supervisor(app, cfg, queues=queue, handle_signals=True)
    except ValueError as exc:
        fail(str(exc))
    run_async(cfg, sup.run)


@cli.command()
def send(
    config: ConfigArg,
    queue: Annotated[str, typer.Argument(help="Queue to send to.", show_default=False)],
    body: Annotated[str, typer.Argument(help="The message as a JSON object.", show_default=False)],
    n: Annotated[int, typer.Option("-n", min=1, help="Send this many copies.")] = 1,
    type_name: Annotated[
        str | None,
        typer.Option("--type", help="Message type name (needed if the queue has several)."),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Partition key (orders jobs on ordered queues).")
    ] = None,
) -> None:
    """Send a message (validated against the handler's type) to a queue."""
    cfg, app = load(config)
    handlers = [h for h in app.handlers.values() if h.queue == queue]
    if type_name is not None:
        handlers = [h for h in handlers if h.type_name == type_name]
    if not handlers:
        known = ", ".join(sorted({h.queue for h in app.handlers.values()})) or "none"
        what = f"type {type_name!r} on queue {queue!r}" if type_name else f"queue {queue!r}"
        fail(f"no handler for {what}; queues with handlers: {known}")
    if len(handlers) > 1:
        names = ", ".join(h.type_name for h in handlers)
        fail(f"queue {queue!r} has several message types ({names}); pick one with --type")
    handler = handlers[0]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        fail(f"BODY is not valid JSON: {exc}")
    try:
        msg = app.converter.structure(data, handler.message_type)
    except Exception as exc:
        fail(f"BODY does not match {handler.type_name}: {describe_structure_error(exc)}")

    async def go() -> list[str]:
        async with client_for(cfg, app) as client:
            jobs = await client.send_many(
                [msg] * n, queue=queue, key=(lambda _: key) if key else None
            )
            return [job.id for job in jobs]

    for job_id in run_async(cfg, go):
        out.print(job_id, highlight=False)


@cli.command()
def check(config: ConfigArg) -> None:
    """Validate the config, import the app and ping the broker; exit 1 on any problem."""
    cfg, app = load(config)
    if cfg.broker.url is None:
        try:
            binary = find_server_binary()
        except BrokerError as exc:
            fail(str(exc))
        where = f"embedded ({binary})"
    else:
        where = redact_url(cfg.broker.url)

    async def go() -> None:
        from trioqueue._worker._partitions import store_queue_bounds

        async with client_for(cfg, app) as client:
            from trioqueue._status import partition_count

            # Bounds go to every partition that exists: the stored count is the truth.
            settings = [
                attrs.evolve(
                    s,
                    partitions=await partition_count(
                        client.redis, cfg.broker.prefix, s.name, s.partitions
                    ),
                )
                for s in app.settings(cfg).values()
            ]
            await store_queue_bounds(client.redis, cfg.broker.prefix, settings)

    run_async(cfg, go)
    table = Table(title=f"app {app.name} — broker {where} — prefix {cfg.broker.prefix}")
    for col in ("queue", "types", "concurrency", "retries", "timeout", "max_length"):
        table.add_column(col)
    for name, s in app.settings(cfg).items():
        types = ", ".join(h.type_name for h in app.handlers.values() if h.queue == name)
        table.add_row(
            name,
            types,
            str(s.concurrency),
            str(s.retries),
            "-" if s.timeout is None else f"{s.timeout}s",
            "-" if s.max_length is None else str(s.max_length),
        )
    out.print(table)
    out.print("[green]ok[/]: config valid, app imported, broker answered")


def main() -> Any:
    """Entry point of the ``trioqueue`` script."""
    import trioqueue._cli_admin  # noqa: F401 - registers the operator commands

    return cli()
