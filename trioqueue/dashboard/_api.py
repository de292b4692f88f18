"""The JSON API under ``/api/`` (docs/reference/dashboard-api.md): what the pages poll.

Reads come from the shared snapshot, except a job lookup and a dead-letter page, which
read the broker for the one job or page asked for. Writes (retry, purge, pause,
resume, cancel) are POSTs, guarded by ``_security.Guard``, and ask the snapshot loop for
a fresh snapshot so the pages show their effect at once.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import attrs
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trioqueue._deadletters import DeadLetter
from trioqueue._keys import PartitionKeys

if TYPE_CHECKING:
    from trioqueue.dashboard._app import Dashboard

__all__ = ["DEAD_PAGE", "api_routes", "dead_page", "job_document"]

# Dead letters per page, and how deep paging may go (oldest first).
DEAD_PAGE = 50
DEAD_MAX = 10_000


class JSON(Response):
    """A JSON response encoded with orjson (datetimes as ISO 8601)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """Encode ``content``."""
        return orjson.dumps(content, default=str)


def error(status: int, message: str) -> JSON:
    """``{"error": message}`` with ``status``."""
    return JSON({"error": message}, status_code=status)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def job_document(dash: Dashboard, job_id: str) -> dict[str, Any]:
    """A job's status as JSON: state, attempts, timestamps, error, progress (when the
    client reports it), and its result when it succeeded."""
    status = await dash.client.status(job_id)
    doc: dict[str, Any] = {f.name: getattr(status, f.name) for f in attrs.fields(type(status))}
    for key, value in doc.items():
        if isinstance(value, dt.datetime):
            doc[key] = _iso(value)
    doc["progress"] = getattr(status, "progress", None)
    doc["result"] = None
    doc["traceback"] = None
    if status.state == "failed" and status.finished_at is not None:
        letter = await _dead_letter_of(dash, status.queue, job_id, status.finished_at)
        if letter is not None:
            doc["traceback"] = letter.traceback or None
    if status.state == "succeeded":
        try:
            doc["result"] = await dash.client.result(job_id, queue=status.queue, timeout=0.5)
        except Exception:  # expired between the two reads, or not decodable: no result
            doc["result"] = None
    return doc


async def _dead_letter_of(
    dash: Dashboard, queue: str, job_id: str, finished: dt.datetime
) -> DeadLetter | None:
    """The dead letter of a failed job: its entry id is the time it failed, so look
    within a few seconds of its finish time in each partition, not through them all."""
    ms = int(finished.timestamp() * 1000)
    for partition in range(await dash.client.partitions(queue)):
        key = PartitionKeys(dash.config.broker.prefix, queue, partition).dead
        for entry_id, fields in await dash.client.redis.xrange(
            key, str(ms - 5000), str(ms + 5000), count=200
        ):
            letter = DeadLetter.from_entry(entry_id, fields or {}, partition)
            if letter.job_id == job_id:
                return letter
    return None


async def dead_page(
    dash: Dashboard, queue: str, page: int, size: int = DEAD_PAGE
) -> dict[str, Any]:
    """Page ``page`` (from 1) of ``queue``'s dead letters, oldest first."""
    want = min(page * size, DEAD_MAX)
    letters = await dash.client.dead_letters(queue, count=want)
    letters.sort(key=lambda d: tuple(int(x) for x in d.id.split("-")))
    chunk = letters[(page - 1) * size : page * size]
    snap = dash.snapshots.latest
    total = snap.queues[queue]["dead"] if snap is not None and queue in snap.queues else None
    return {
        "queue": queue,
        "page": page,
        "size": size,
        "total": total,
        "items": [
            {
                "id": d.id,
                "partition": d.partition,
                "job_id": d.job_id,
                "type": d.type_name,
                "error_type": d.error_type,
                "error": d.error,
                "attempts": d.attempts,
                "worker": d.worker,
                "failed_at": _iso(d.failed_at),
                "body": d.body,
                "traceback": d.traceback,
            }
            for d in chunk
        ],
    }


async def _ids(request: Request) -> list[str] | Response | None:
    """The ``ids`` of a retry or purge body, None for ``{"all": true}``, or a 400."""
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return error(400, 'expected a JSON body: {"ids": [...]} or {"all": true}')
    if isinstance(body, dict) and body.get("all") is True:
        return None
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
        return error(400, 'expected {"ids": ["<entry id>", ...]} or {"all": true}')
    return ids


def api_routes(dash: Dashboard) -> list[Route]:
    """The routes of the JSON API, bound to ``dash``."""

    def snapshot_or_503() -> Any:
        snap = dash.snapshots.latest
        if snap is None:
            return error(503, f"no snapshot yet: {dash.snapshots.error or 'starting'}")
        return snap

    def known(queue: str) -> Response | None:
        return None if queue in dash.queues else error(404, f"unknown queue {queue!r}")

    encoded: list[Any] = [None, b""]  # (snapshot, its status document as JSON)

    async def status(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        if encoded[0] is not snap:  # encoded once per snapshot, not once per request
            encoded[:] = [snap, orjson.dumps(snap.status)]
        return Response(encoded[1], media_type="application/json")

    async def overview(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        return JSON(
            {
                "taken_at": snap.taken_at,
                "took": snap.took,
                "snapshot_error": dash.snapshots.error,
                "interval": dash.snapshots.interval,
                "queues": list(snap.queues.values()),
                "members": snap.members,
            }
        )

    async def queue(request: Request) -> Response:
        name = request.path_params["name"]
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        if (missing := known(name)) is not None:
            return missing
        doc = dict(snap.queues.get(name, {}))
        doc["settings"] = dash.settings_of(name)
        doc["taken_at"], doc["snapshot_error"] = snap.taken_at, dash.snapshots.error
        return JSON(doc)

    async def workers(request: Request) -> Response:
        snap = snapshot_or_503()
        if isinstance(snap, Response):
            return snap
        return JSON({"taken_at": snap.taken_at, "members": snap.members})

    async def job(request: Request) -> Response:
        doc = await job_document(dash, request.path_params["job_id"])
        return JSON(doc, status_code=404 if doc["state"] == "unknown" else 200)

    async def cancel(request: Request) -> Response:
        outcome = await dash.client.cancel(request.path_params["job_id"])
        dash.snapshots.refresh_soon()
        return JSON({"job_id": request.path_params["job_id"], "outcome": outcome})

    async def dead(request: Request) -> Response:
        name = request.path_params["queue"]
        if (missing := known(name)) is not None:
            return missing
        try:
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            return error(400, "page: expected a whole number from 1")
        return JSON(await dead_page(dash, name, page))

    async def targets(request: Request) -> tuple[str, list[str] | None] | Response:
        """The queue and dead-letter ids a retry or purge acts on, or the refusal."""
        name = request.path_params["queue"]
        if (missing := known(name)) is not None:
            return missing
        ids = await _ids(request)
        return ids if isinstance(ids, Response) else (name, ids)

    async def retry(request: Request) -> Response:
        if isinstance(target := await targets(request), Response):
            return target
        name, ids = target
        resent, skipped = await dash.client.retry_dead_letters(name, ids)
        dash.snapshots.refresh_soon()
        return JSON({"queue": name, "resent": resent, "skipped": skipped})

    async def purge(request: Request) -> Response:
        if isinstance(target := await targets(request), Response):
            return target
        name, ids = target
        purged = await dash.client.purge_dead_letters(name, ids)
        dash.snapshots.refresh_soon()
        return JSON({"queue": name, "purged": purged})

    def pauser(paused: bool) -> Any:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            if (missing := known(name)) is not None:
                return missing
            client = dash.client
            changed = await (client.pause(name) if paused else client.resume(name))
            dash.snapshots.refresh_soon()
            return JSON({"queue": name, "paused": paused, "changed": changed})

        return handler

    return [
        Route("/api/status", status),
        Route("/api/overview", overview),
        Route("/api/workers", workers),
        Route("/api/queues/{name}", queue),
        Route("/api/queues/{name}/pause", pauser(True), methods=["POST"]),
        Route("/api/queues/{name}/resume", pauser(False), methods=["POST"]),
        Route("/api/jobs/{job_id}", job),
        Route("/api/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/api/dead/{queue}", dead),
        Route("/api/dead/{queue}/retry", retry, methods=["POST"]),
        Route("/api/dead/{queue}/purge", purge, methods=["POST"]),
    ]
