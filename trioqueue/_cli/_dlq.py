"""``trioqueue dlq``: list, re-send and purge the dead letters of a queue."""

from __future__ import annotations

from typing import Annotated, Any

import trio
import typer
from rich.table import Table

from trioqueue._cli._boundary import CommandError
from trioqueue._cli._console import out
from trioqueue._cli._project import ConfigArg, QueueArg, client_for, load

IdsOpt = Annotated[
    list[str] | None, typer.Option("--id", help="Dead-letter entry id (repeatable).")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every dead letter of the queue.")]


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

    letters = trio.run(go)
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
        raise CommandError("give either --id ID (repeatable) or --all")
    return None if all_ else ids


def dlq_retry(config: ConfigArg, queue: QueueArg, id: IdsOpt = None, all: AllOpt = False) -> None:
    """Re-send dead letters as fresh jobs (attempts reset) and remove them from the DLQ."""
    cfg, app = load(config)
    ids = _pick(id, all)

    async def go() -> tuple[int, int]:
        async with client_for(cfg, app) as client:
            return await client.retry_dead_letters(queue, ids)

    resent, skipped = trio.run(go)
    out.print(f"re-sent {resent} job(s) to {queue}", highlight=False)
    if skipped:
        out.print(f"kept {skipped} entr(ies) that are not job envelopes", highlight=False)


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
        raise CommandError("aborted, nothing deleted")

    async def go() -> int:
        async with client_for(cfg, app) as client:
            return await client.purge_dead_letters(queue, ids)

    out.print(f"deleted {trio.run(go)} dead letter(s)", highlight=False)
