"""``trioqueue status``: every queue's partitions, its rates over the last 5 minutes (from
the history in the broker) and the live members, as tables or JSON."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import trio
import typer
from rich.table import Table

from trioqueue._cli._console import out
from trioqueue._cli._jobs import job_status
from trioqueue._cli._project import ConfigArg, QueueOpt, client_for, load
from trioqueue._status import collect_status


def status(
    config: ConfigArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    job: Annotated[str | None, typer.Option("--job", help="Show this job's state instead.")] = None,
    queue: QueueOpt = None,
) -> None:
    """Show each queue's backlog, in-flight, delayed and dead jobs, its job rates over
    the last 5 minutes, and live members (or, with --job, one job's state)."""
    cfg, app = load(config)
    if job is not None:
        job_status(cfg, app, job, queue, as_json)
        return

    async def go() -> dict[str, Any]:
        async with client_for(cfg, app) as client:
            queues = list(dict.fromkeys([*app.queues, *cfg.queues]))
            ordered = [q for q, s in app.settings(cfg).items() if s.ordered]
            return await collect_status(client.redis, cfg.broker.prefix, queues, ordered)

    doc = trio.run(go)
    if as_json:
        out.print_json(orjson.dumps(doc).decode())
        return
    table = Table(title="queues")
    cols: tuple[str, ...] = (
        "queue",
        "mode",
        "state",
        "partition",
        "queued",
        "in flight",
        "delayed",
        "dead",
        "owner",
    )
    on_cluster = any(p.get("node") for q in doc["queues"].values() for p in q["partitions"])
    if on_cluster:
        cols += ("node",)
    for col in cols:
        left = col in ("queue", "mode", "state", "owner", "node")
        table.add_column(col, justify="left" if left else "right")
    for name, q in doc["queues"].items():
        for p in q["partitions"]:
            table.add_row(
                name,
                q["mode"],
                "paused" if q["paused"] else "active",
                str(p["index"]),
                str(p["queued"]),
                str(p["pending"]),
                str(p["delayed"]),
                str(p["dead"]),
                p["owner"] or "-",
                *((p["node"] or "?",) if on_cluster else ()),
            )
    out.print(table)
    out.print(_rates_table(doc))
    for name, q in doc["queues"].items():
        for p in q["partitions"]:
            if p.get("lost"):
                out.print(
                    f"[red]queue {name} partition {p['index']}: the broker lost {p['lost']} "
                    f"acknowledged entries ({p['rollbacks']} rollback(s) seen by workers)[/red]"
                )
    members = Table(title=f"live members ({len(doc['members'])})")
    members.add_column("member (host:pid:random)")
    members.add_column("queues")
    members.add_column("owns (ordered queues)")
    sizes = {sup["id"]: len(sup["members"]) for sup in doc.get("supervisors", [])}
    shown: dict[str, int] = {}
    for m in doc["members"]:
        owns = "; ".join(f"{q}: {', '.join(map(str, ps))}" for q, ps in m["partitions"].items())
        parent = m.get("parent")
        name = m["id"]
        if parent is not None:
            # The worker processes of one `run --workers N` parent, under it.
            if parent not in shown:
                members.add_row(f"{parent} (parent of {sizes.get(parent, 0)})", "", "")
            shown[parent] = shown.get(parent, 0) + 1
            name = f"{'└' if shown[parent] == sizes.get(parent) else '├'}─ {name}"
        members.add_row(name, ", ".join(m["queues"]), owns or "-")
    out.print(members)


def _rates_table(doc: dict[str, Any]) -> Table:
    """Per queue: jobs per second over the last 5 minutes (the current one included),
    the mean handler time, and the counts of the current minute (ok/failed/dead)."""
    table = Table(title="rates over the last 5 minutes, jobs/s")
    names = ("succeeded", "failed", "retried", "dead", "cancelled")
    for col in ("queue", *names, "ms/run", "this minute"):
        table.add_column(col, justify="left" if col == "queue" else "right")
    for name, q in doc["queues"].items():
        r, now = q["rates"], q["history"][-1]
        table.add_row(
            name,
            *(f"{r[f'{k}_per_second']:.2f}" for k in names),
            f"{r['handler_ms_mean']:.2f}",
            f"{now['succeeded']}/{now['failed']}/{now['dead']}",
        )
    return table
