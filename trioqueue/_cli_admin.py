"""Operator commands: ``status``, ``cancel``, ``result`` and the ``dlq`` group."""

from __future__ import annotations

from typing import Annotated, Any

import attrs
import orjson
import trio
import typer
from rich.table import Table

from trioqueue._app import App
from trioqueue._cli import ConfigArg, cli, client_for, fail, load, out, run_async
from trioqueue._client import Client
from trioqueue._config import Config
from trioqueue._errors import JobCancelled, JobFailed
from trioqueue._keys import PartitionKeys
from trioqueue._ops import JobStatus
from trioqueue._status import collect_status, partition_count
from trioqueue._worker._partitions import store_queue_bounds

dlq = typer.Typer(help="Inspect, re-send and purge dead-lettered jobs.", no_args_is_help=True)
cli.add_typer(dlq, name="dlq")

QueueArg = Annotated[str, typer.Argument(help="Queue name.", show_default=False)]


@cli.command()
def status(
    config: ConfigArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    job: Annotated[str | None, typer.Option("--job", help="Show this job's state instead.")] = None,
    queue: QueueOpt = None,
) -> None:
    """Show each queue's backlog, in-flight, delayed and dead jobs, and live members
    (or, with --job, one job's state)."""
    cfg, app = load(config)
    if job is not None:
        job_status(cfg, app, job, queue, as_json)
        return

    async def go() -> dict[str, Any]:
        async with client_for(cfg, app) as client:
            queues = list(dict.fromkeys([*app.queues, *cfg.queues]))
            ordered = [q for q, s in app.settings(cfg).items() if s.ordered]
            return await collect_status(client.redis, cfg.broker.prefix, queues, ordered)

    doc = run_async(cfg, go)
    if as_json:
        out.print_json(orjson.dumps(doc).decode())
        return
    table = Table(title="queues")
    cols = ("queue", "mode", "partition", "queued", "in flight", "delayed", "dead", "owner")
    for col in cols:
        table.add_column(col, justify="left" if col in ("queue", "mode", "owner") else "right")
    for name, q in doc["queues"].items():
        for p in q["partitions"]:
            table.add_row(
                name,
                q["mode"],
                str(p["index"]),
                str(p["queued"]),
                str(p["pending"]),
                str(p["delayed"]),
                str(p["dead"]),
                p["owner"] or "-",
            )
    out.print(table)
    members = Table(title=f"live members ({len(doc['members'])})")
    members.add_column("member (host:pid:random)")
    members.add_column("queues")
    members.add_column("owns (ordered queues)")
    for m in doc["members"]:
        owns = "; ".join(f"{q}: {', '.join(map(str, ps))}" for q, ps in m["partitions"].items())
        members.add_row(m["id"], ", ".join(m["queues"]), owns or "-")
    out.print(members)


def job_status(cfg: Config, app: App, job_id: str, queue: str | None, as_json: bool) -> None:
    async def go() -> JobStatus:
        async with client_for(cfg, app) as client:
            if queue is not None:
                return await client.status(job_id, queue=queue)
            return await locate(client, app.queues, job_id)

    st = run_async(cfg, go)
    doc = {
        k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in attrs.asdict(st).items()
    }
    if as_json:
        out.print_json(orjson.dumps(doc).decode())
    else:
        for key, value in doc.items():
            if value is not None:
                out.print(f"{key:12} {value}", highlight=False)
    if st.state == "unknown":
        raise typer.Exit(1)


@cli.command()
def cancel(
    config: ConfigArg,
    queue: QueueArg,
    job_id: Annotated[str, typer.Argument(help="Job id.", show_default=False)],
) -> None:
    """Cancel a job: remove it if still waiting, or ask its worker to stop it."""
    cfg, app = load(config)

    async def go() -> str:
        async with client_for(cfg, app) as client:
            return await client.cancel(job_id, queue=queue)

    state = run_async(cfg, go)
    messages = {
        "removed": f"job {job_id} was waiting and is removed (recorded as cancelled)",
        "running": f"job {job_id} is running; its worker was asked to cancel it",
        "unknown": f"job {job_id} is not waiting or running on queue {queue!r} "
        "(finished, dead-lettered, or never sent)",
    }
    out.print(messages[state], highlight=False)
    if state == "unknown":
        raise typer.Exit(1)


QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", "-q", help="The job's queue (default: look in every queue)."),
]


async def locate(client: Client, queues: list[str], job_id: str) -> JobStatus:
    """The status of ``job_id`` in the first queue that knows it (else ``unknown``)."""
    for queue in queues:
        status = await client.status(job_id, queue=queue)
        if status.state != "unknown":
            return status
    return JobStatus(job_id, queues[0] if queues else "", "unknown")


@cli.command()
def result(
    config: ConfigArg,
    job_id: Annotated[str, typer.Argument(help="Job id.", show_default=False)],
    queue: QueueOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 0.0,
) -> None:
    """Print a job's result as JSON (exit 1 if it failed, was cancelled or is not there)."""
    cfg, app = load(config)

    async def go() -> Any:
        async with client_for(cfg, app) as client:
            q = queue
            if q is None:
                found = await locate(client, app.queues, job_id)
                if found.state == "unknown":
                    fail(f"no job {job_id} on queues {', '.join(app.queues)} (or it expired)")
                q = found.queue
            return await client.result(job_id, queue=q, timeout=max(wait, 0.001))

    try:
        value = run_async(cfg, go)
    except (JobFailed, JobCancelled) as exc:
        fail(str(exc))
    except trio.TooSlowError:
        fail(f"no result for job {job_id} (yet); use --wait SECONDS to wait for it")
    out.print_json(orjson.dumps(value).decode())


@cli.command()
def partitions(
    config: ConfigArg,
    queue: QueueArg,
    increase_to: Annotated[
        int, typer.Option("--increase-to", min=1, help="New partition count (only grows).")
    ],
) -> None:
    """Increase a queue's partition count. Workers pick it up while running.

    Keys that now hash to another partition keep their order only for jobs sent
    after the key's earlier jobs were processed (see docs/how-to/partitions.md).
    """
    cfg, app = load(config)

    async def go() -> int:
        async with client_for(cfg, app) as client:
            current = await partition_count(
                client.redis, cfg.broker.prefix, queue, app.queue_settings(queue, cfg).partitions
            )
            if increase_to < current:
                fail(f"queue {queue!r} has {current} partitions; they can only grow")
            settings = attrs.evolve(app.queue_settings(queue, cfg), partitions=increase_to)
            await store_queue_bounds(client.redis, cfg.broker.prefix, [settings])
            await client.redis.hset(
                PartitionKeys(cfg.broker.prefix, queue).meta, {"partitions": increase_to}
            )
            return current

    before = run_async(cfg, go)
    out.print(f"queue {queue}: {before} → {increase_to} partitions", highlight=False)


@dlq.command("list")
def dlq_list(
    config: ConfigArg,
    queue: QueueArg,
    count: Annotated[int, typer.Option(help="Show at most this many.")] = 50,
) -> None:
    """List the oldest dead letters of QUEUE."""
    cfg, app = load(config)

    async def go() -> Any:
        async with client_for(cfg, app) as client:
            return await client.dead_letters(queue, count=count)

    letters = run_async(cfg, go)
    table = Table(title=f"dead letters of {queue} ({len(letters)} shown)")
    for col in ("id", "job", "type", "attempts", "error", "failed at", "worker"):
        table.add_column(col, overflow="fold")
    for d in letters:
        table.add_row(
            d.id,
            d.job_id,
            d.type_name,
            str(d.attempts),
            f"{d.error_type}: {d.error}",
            d.failed_at.isoformat(timespec="seconds") if d.failed_at else "",
            d.worker,
        )
    out.print(table)


def _pick(ids: list[str] | None, all_: bool) -> list[str] | None:
    if bool(ids) == all_:
        fail("give either --id ID (repeatable) or --all")
    return None if all_ else ids


IdsOpt = Annotated[
    list[str] | None, typer.Option("--id", help="Dead-letter entry id (repeatable).")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every dead letter of the queue.")]


@dlq.command("retry")
def dlq_retry(config: ConfigArg, queue: QueueArg, id: IdsOpt = None, all: AllOpt = False) -> None:
    """Re-send dead letters as fresh jobs (attempts reset) and remove them from the DLQ."""
    cfg, app = load(config)
    ids = _pick(id, all)

    async def go() -> tuple[int, int]:
        async with client_for(cfg, app) as client:
            return await client.retry_dead_letters(queue, ids)

    resent, skipped = run_async(cfg, go)
    out.print(f"re-sent {resent} job(s) to {queue}", highlight=False)
    if skipped:
        out.print(f"kept {skipped} entr(ies) that are not job envelopes", highlight=False)


@dlq.command("purge")
def dlq_purge(
    config: ConfigArg,
    queue: QueueArg,
    id: IdsOpt = None,
    all: AllOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters for good (asks for confirmation unless --yes)."""
    cfg, app = load(config)
    ids = _pick(id, all)
    what = f"ALL dead letters of {queue}" if ids is None else f"{len(ids)} dead letter(s)"
    if not yes and not typer.confirm(f"Delete {what}? This cannot be undone"):
        fail("aborted, nothing deleted")

    async def go() -> int:
        async with client_for(cfg, app) as client:
            return await client.purge_dead_letters(queue, ids)

    out.print(f"deleted {run_async(cfg, go)} dead letter(s)", highlight=False)
