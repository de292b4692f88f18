"""Commands about one job: ``status --job``, ``result`` and ``cancel``."""

from __future__ import annotations

from typing import Annotated, Any

import attrs
import orjson
import trio
import typer

from trioqueue._app import App
from trioqueue._cli._boundary import CommandError
from trioqueue._cli._console import out
from trioqueue._cli._project import ConfigArg, QueueArg, QueueOpt, client_for, load
from trioqueue._client import Client
from trioqueue._config import Config
from trioqueue._job import JobStatus

JobIdArg = Annotated[str, typer.Argument(help="Job id.", show_default=False)]


async def locate(client: Client, queues: list[str], job_id: str) -> JobStatus:
    """The status of ``job_id`` in the first queue that knows it (else ``unknown``)."""
    for queue in queues:
        status = await client.status(job_id, queue=queue)
        if status.state != "unknown":
            return status
    return JobStatus(job_id, queues[0] if queues else "", "unknown")


def job_status(cfg: Config, app: App, job_id: str, queue: str | None, as_json: bool) -> None:
    """``status --job``: print one job's status; exit 1 if no queue knows the job."""

    async def go() -> JobStatus:
        async with client_for(cfg, app) as client:
            if queue is not None:
                return await client.status(job_id, queue=queue)
            return await locate(client, app.queues, job_id)

    st = trio.run(go)
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


def cancel(config: ConfigArg, queue: QueueArg, job_id: JobIdArg) -> None:
    """Cancel a job: remove it if still waiting, or ask its worker to stop it."""
    cfg, app = load(config)

    async def go() -> str:
        async with client_for(cfg, app) as client:
            return await client.cancel(job_id, queue=queue)

    state = trio.run(go)
    messages = {
        "removed": f"job {job_id} was waiting and is removed (recorded as cancelled)",
        "running": f"job {job_id} is running; its worker was asked to cancel it",
        "unknown": f"job {job_id} is not waiting or running on queue {queue!r} "
        "(finished, dead-lettered, or never sent)",
    }
    out.print(messages[state], highlight=False)
    if state == "unknown":
        raise typer.Exit(1)


def result(
    config: ConfigArg,
    job_id: JobIdArg,
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
                    raise CommandError(
                        f"no job {job_id} on queues {', '.join(app.queues)} (or it expired)"
                    )
                q = found.queue
            return await client.result(job_id, queue=q, timeout=max(wait, 0.001))

    try:
        value = trio.run(go)
    except trio.TooSlowError as exc:
        raise CommandError(
            f"no result for job {job_id} (yet); use --wait SECONDS to wait for it"
        ) from exc
    out.print_json(orjson.dumps(value).decode())
