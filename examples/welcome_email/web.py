"""The web app: ``POST /signup`` enqueues a ``SendWelcomeEmail`` and answers with its
job id; ``GET /jobs/{job_id}`` shows where that job is.

Run it on Trio with Hypercorn's Trio worker (Starlette runs on Trio through AnyIO)::

    hypercorn --worker-class trio --bind 127.0.0.1:8000 web:api

One ``trioqueue.Client`` is opened when the app starts (the ASGI lifespan) and shared
by every request until the app stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tasks import SendWelcomeEmail, app

import trioqueue

# The embedded broker's URL is only known at run time; this helper is internal API.
from trioqueue._embedded import default_data_dir, embedded_broker

CONFIG = trioqueue.load_config(Path(__file__).resolve().parent / "config.toml")


@asynccontextmanager
async def broker_url(config: trioqueue.Config) -> AsyncIterator[str]:
    """The configured ``broker.url``, else the URL of the embedded broker (the one a
    running worker owns, or one started for as long as this context lasts)."""
    if config.broker.url is not None:
        yield config.broker.url
        return
    data_dir = default_data_dir(config.base_dir, config.broker.data_dir)
    async with embedded_broker(data_dir, appendfsync=config.broker.appendfsync) as url:
        yield url


class State(TypedDict):
    client: trioqueue.Client


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[State]:
    async with (
        broker_url(CONFIG) as url,
        app.connect(url, prefix=CONFIG.broker.prefix, config=CONFIG) as client,
    ):
        yield {"client": client}


async def signup(request: Request) -> JSONResponse:
    try:
        data: Any = await request.json()
        msg = SendWelcomeEmail(email=str(data["email"]), name=str(data["name"]))
    except (ValueError, KeyError, TypeError):
        return JSONResponse(
            {"error": 'expected a JSON object {"email": "...", "name": "..."}'}, status_code=422
        )
    if "@" not in msg.email:
        return JSONResponse({"error": f"not an email address: {msg.email!r}"}, status_code=422)
    client: trioqueue.Client = request.state.client
    job = await client.send(msg)
    return JSONResponse({"job_id": job.id, "queue": job.queue}, status_code=202)


async def job_status(request: Request) -> JSONResponse:
    client: trioqueue.Client = request.state.client
    status = await client.status(request.path_params["job_id"], queue="emails")
    return JSONResponse(
        {"job_id": status.job_id, "state": status.state, "attempts": status.attempts},
        status_code=404 if status.state == "unknown" else 200,
    )


api = Starlette(
    routes=[
        Route("/signup", signup, methods=["POST"]),
        Route("/jobs/{job_id}", job_status, methods=["GET"]),
    ],
    lifespan=lifespan,
)
