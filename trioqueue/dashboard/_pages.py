"""The pages: Overview, Queue, Workers, Job and Dead letters, rendered from the snapshot.

Each page names the API document it is drawn from (``data-api``); dashboard.js polls
that document and fills the same bound elements again. Actions are buttons with a
``data-act`` that the script turns into guarded POSTs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from trioqueue.dashboard._api import dead_page, job_document
from trioqueue.dashboard._html import Col, cell, e, fmt, layout, table

if TYPE_CHECKING:
    from trioqueue.dashboard._app import Dashboard

__all__ = ["page_routes"]

QUEUES: list[Col] = [
    ("queue", "name", "link:/queues/"),
    ("mode", "mode", "text"),
    ("state", "state", "state"),
    ("queued", "queued", "num"),
    ("running", "running", "num"),
    ("delayed", "delayed", "num"),
    ("dead", "dead", "num"),
    ("backlog", "backlog", "num"),
    ("dead letters", "name", "link:/dead/"),
]
MEMBERS: list[Col] = [
    ("member", "id", "text"),
    ("host", "host", "text"),
    ("pid", "pid", "num"),
    ("queues", "queues", "text"),
    ("partitions owned", "owned", "num"),
    ("jobs running", "running", "num"),
    ("heartbeat expires in (s)", "expires_in", "num"),
]
PARTITIONS: list[Col] = [
    ("partition", "index", "num"),
    ("backlog", "backlog", "num"),
    ("queued", "queued", "num"),
    ("pending", "pending", "num"),
    ("delayed", "delayed", "num"),
    ("dead", "dead", "num"),
    ("owner", "owner", "text"),
    ("lease epoch", "epoch", "num"),
    ("lost", "lost", "num"),
]
DELAYED: list[Col] = [
    ("job", "job_id", "link:/jobs/"),
    ("type", "type", "text"),
    ("attempt", "attempt", "num"),
    ("due", "due_at", "time"),
    ("partition", "partition", "num"),
]
RUNNING: list[Col] = [
    ("job", "job_id", "link:/jobs/"),
    ("type", "type", "text"),
    ("worker", "worker", "text"),
    ("running for (s)", "running_for", "num"),
    ("progress", "progress", "progress"),
    ("deliveries", "deliveries", "num"),
    ("partition", "partition", "num"),
]
SETTINGS: list[Col] = [("setting", "key", "text"), ("value", "value", "text")]
DEAD: list[Col] = [
    ("select", "id", "check"),
    ("job", "job_id", "link:/jobs/"),
    ("type", "type", "text"),
    ("error type", "error_type", "text"),
    ("error", "error", "text"),
    ("attempts", "attempts", "num"),
    ("failed", "failed_at", "time"),
    ("body", "body", "text"),
    ("traceback", "traceback", "details"),
    ("retry", "id", "button:retry-one:Retry"),
    ("purge", "id", "button:purge-one:Purge"),
]
JOB_FIELDS = [
    ("state", "state", "state"),
    ("queue", "queue", "text"),
    ("attempts", "attempts", "num"),
    ("enqueued", "enqueued_at", "time"),
    ("started", "started_at", "time"),
    ("finished", "finished_at", "time"),
    ("due", "due_at", "time"),
    ("worker", "worker", "text"),
    ("progress", "progress", "progress"),
]


def _dl(fields: list[Col], doc: dict[str, Any], root: str) -> str:
    rows = "".join(
        f"<dt>{e(label)}</dt><dd>{cell(field, kind, doc.get(field), root)}</dd>"
        for label, field, kind in fields
    )
    return f'<dl class="facts">{rows}</dl>'


def page_routes(dash: Dashboard) -> list[Route]:
    """The page routes, bound to ``dash``."""

    def render(request: Request, title: str, body: str, api: str, current: str = "") -> Response:
        html = layout(
            title,
            body,
            root=request.scope.get("root_path", ""),
            csrf=request.scope["state"]["tq_csrf"],
            api=api,
            interval=dash.snapshots.interval,
            current=current,
        )
        return HTMLResponse(html)

    def stale() -> str:
        error = dash.snapshots.error
        return f'<p class="banner">broker: {e(error)}</p>' if error else ""

    async def overview(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        snap = dash.snapshots.latest
        queues = list(snap.queues.values()) if snap else []
        members = snap.members if snap else []
        body = (
            f"{stale()}<h1>Overview</h1><section><h2>Queues</h2>"
            f"{table('queues', QUEUES, queues, root, 'no queues')}</section>"
            '<section><h2>Throughput, last hour</h2><div class="chart" id="chart">'
            '<p class="muted">no history yet</p></div>'
            '<p class="legend"><span class="key ok">succeeded</span>'
            '<span class="key bad">failed</span></p></section>'
            "<section><h2>Live members</h2>"
            f"{table('members', MEMBERS, members, root, 'no live members')}</section>"
        )
        return render(request, "Overview", body, "/api/overview", "/")

    async def queue(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        name = request.path_params["name"]
        if name not in dash.queues:
            return HTMLResponse(f"<p>unknown queue {e(name)}</p>", status_code=404)
        snap = dash.snapshots.latest
        doc = dict(snap.queues.get(name, {})) if snap else {}
        doc["settings"] = dash.settings_of(name)
        settings = [{"key": k, "value": fmt(v)} for k, v in doc["settings"].items()]
        body = (
            f'{stale()}<h1>Queue <span data-f="name" data-k="text">{e(name)}</span> '
            f"{cell('state', 'state', doc.get('state'), root)}</h1>"
            '<p class="actions">'
            f'<button type="button" data-act="pause" data-v="{e(name)}">Pause</button>'
            f'<button type="button" data-act="resume" data-v="{e(name)}">Resume</button>'
            f'<a href="{e(root)}/dead/{e(name)}">Dead letters ('
            f"{cell('dead', 'num', doc.get('dead'), root)})</a></p>"
            f"<section><h2>Partitions</h2>"
            f"{table('partitions', PARTITIONS, doc.get('partitions', []), root, 'none')}</section>"
            "<section><h2>Running now</h2>"
            f"{table('running_jobs', RUNNING, doc.get('running_jobs', []), root, 'none')}</section>"
            f"<section><h2>Next delayed jobs</h2>"
            f"{table('delayed_jobs', DELAYED, doc.get('delayed_jobs', []), root, 'none')}</section>"
            f"<section><h2>Settings</h2>{table('', SETTINGS, settings, root, '')}</section>"
        )
        return render(request, f"Queue {name}", body, f"/api/queues/{name}")

    async def workers(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        snap = dash.snapshots.latest
        body = (
            f"{stale()}<h1>Workers</h1>"
            f"{table('members', MEMBERS, snap.members if snap else [], root, 'no live members')}"
        )
        return render(request, "Workers", body, "/api/workers", "/workers")

    async def jobs(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        wanted = request.query_params.get("id", "").strip()
        if wanted:
            return RedirectResponse(f"{root}/jobs/{quote(wanted, safe='')}", status_code=303)
        return render(request, "Jobs", _lookup_form(root, ""), "", "/jobs")

    async def job(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        job_id = request.path_params["job_id"]
        doc = await job_document(dash, job_id)
        body = (
            f"{_lookup_form(root, job_id)}<h1>Job <code>{e(job_id)}</code></h1>"
            f"{_dl(JOB_FIELDS, doc, root)}"
            f'<p class="actions"><button type="button" data-act="cancel" data-v="{e(job_id)}">'
            "Cancel</button></p>"
            f'<h2>Error</h2><pre data-f="error" data-k="text">{e(fmt(doc["error"]))}</pre>'
            f'<h2>Result</h2><pre data-f="result" data-k="json">{e(_json(doc["result"]))}</pre>'
        )
        return render(request, f"Job {job_id}", body, f"/api/jobs/{job_id}", "/jobs")

    async def dead(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        name = request.path_params["queue"]
        if name not in dash.queues:
            return HTMLResponse(f"<p>unknown queue {e(name)}</p>", status_code=404)
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            page = 1
        doc = await dead_page(dash, name, page)
        base = f"{root}/dead/{name}?page="
        pager = (f'<a href="{e(base)}{page - 1}">previous</a> ' if page > 1 else "") + (
            f'<a href="{e(base)}{page + 1}">next</a>' if len(doc["items"]) == doc["size"] else ""
        )
        body = (
            f'{stale()}<h1>Dead letters of <a href="{e(root)}/queues/{e(name)}">{e(name)}</a>: '
            f"{cell('total', 'num', doc['total'], root)}</h1>"
            f'<p class="actions" data-queue="{e(name)}">'
            '<button type="button" data-act="retry-selected">Retry selected</button>'
            '<button type="button" data-act="purge-selected">Purge selected</button>'
            '<button type="button" data-act="retry-all">Retry all</button>'
            '<button type="button" class="danger" data-act="purge-all">Purge all</button></p>'
            f"{table('items', DEAD, doc['items'], root, 'no dead letters')}"
            f'<p class="pager">page {page} {pager}</p>'
        )
        return render(request, f"Dead letters of {name}", body, f"/api/dead/{name}?page={page}")

    return [
        Route("/", overview),
        Route("/queues/{name}", queue),
        Route("/workers", workers),
        Route("/jobs", jobs),
        Route("/jobs/{job_id}", job),
        Route("/dead/{queue}", dead),
    ]


def _json(value: Any) -> str:
    return "-" if value is None else orjson.dumps(value, default=str).decode()


def _lookup_form(root: str, value: str) -> str:
    return (
        f'<form class="lookup" method="get" action="{e(root)}/jobs">'
        '<label for="job-id">Job id</label>'
        f'<input id="job-id" name="id" value="{e(value)}" autocomplete="off" required>'
        "<button>Look up</button></form>"
    )
