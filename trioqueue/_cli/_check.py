"""``trioqueue check``: validate the config, import the app, reach the broker."""

from __future__ import annotations

import attrs
import trio
from rich.table import Table

from trioqueue._cli._console import out
from trioqueue._cli._project import ConfigArg, client_for, load
from trioqueue._embedded import find_server_binary
from trioqueue._redact import redact_url
from trioqueue._status import partition_count
from trioqueue._worker._partitions import store_queue_bounds


def check(config: ConfigArg) -> None:
    """Validate the config, import the app and ping the broker; exit 1 on any problem."""
    cfg, app = load(config)
    if cfg.broker.url is None:
        where = f"embedded ({find_server_binary()})"
    else:
        where = redact_url(cfg.broker.url)

    async def go() -> None:
        async with client_for(cfg, app) as client:
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

    trio.run(go)
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
