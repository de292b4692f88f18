"""``trioqueue send``: a JSON body, checked against the handler's type, sent as jobs."""

from __future__ import annotations

from typing import Annotated

import orjson
import trio
import typer

from trioqueue._cli._boundary import CommandError
from trioqueue._cli._console import out
from trioqueue._cli._project import ConfigArg, client_for, load
from trioqueue._converter import describe_structure_error


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
        raise CommandError(f"no handler for {what}; queues with handlers: {known}")
    if len(handlers) > 1:
        names = ", ".join(h.type_name for h in handlers)
        raise CommandError(
            f"queue {queue!r} has several message types ({names}); pick one with --type"
        )
    handler = handlers[0]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"BODY is not valid JSON: {exc}") from exc
    try:
        msg = app.converter.structure(data, handler.message_type)
    except Exception as exc:
        raise CommandError(
            f"BODY does not match {handler.type_name}: {describe_structure_error(exc)}"
        ) from exc

    async def go() -> list[str]:
        async with client_for(cfg, app) as client:
            jobs = await client.send_many(
                [msg] * n, queue=queue, key=(lambda _: key) if key else None
            )
            return [job.id for job in jobs]

    for job_id in trio.run(go):
        out.print(job_id, highlight=False)
