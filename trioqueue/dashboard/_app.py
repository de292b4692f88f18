"""The dashboard: one broker client, one snapshot loop, the ASGI app around them.

``Dashboard.running()`` owns the broker connection and the snapshot loop's nursery;
``Dashboard.asgi`` is the Starlette app, whose lifespan is ``running()`` when it runs on
its own (``create_app``, ``trioqueue dashboard``). Mounted inside another ASGI app,
whose lifespan Starlette does not pass on to mounted apps, the host app enters
``running()`` in its own lifespan (docs/how-to/dashboard.md).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import attrs
import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from trioqueue._app import App
from trioqueue._cli._project import broker_url, import_app
from trioqueue._client import Client
from trioqueue._config import Config
from trioqueue._errors import BrokerAuthError, TrioqueueError
from trioqueue.dashboard._api import api_routes
from trioqueue.dashboard._html import e
from trioqueue.dashboard._pages import page_routes
from trioqueue.dashboard._security import AUTH_COOKIE, Guard, Secrets, cookie_header
from trioqueue.dashboard._snapshot import Snapshotter
from trioqueue.dashboard._throttle import Throttle, client_address

__all__ = ["TOKEN_ENV", "Dashboard", "create_app"]

TOKEN_ENV = "TRIOQUEUE_DASHBOARD_TOKEN"
STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


class Dashboard:
    """The web dashboard of one app's queues (see docs/how-to/dashboard.md).

    ``token`` (else ``TRIOQUEUE_DASHBOARD_TOKEN``, else ``[dashboard] token``) is the
    secret every request must carry; ``interval`` (else ``[dashboard] interval``) the
    seconds between two snapshots of the broker. ``app`` defaults to the one the
    config names.
    """

    def __init__(
        self,
        config: Config,
        *,
        app: App | None = None,
        token: str | None = None,
        interval: float | None = None,
    ) -> None:
        self.config = config
        self.app = app if app is not None else import_app(config)
        self.token = token or os.environ.get(TOKEN_ENV) or config.dashboard.token
        self.keys = Secrets(self.token)
        self.throttle = Throttle()
        self.queues = list(dict.fromkeys([*self.app.queues, *config.queues]))
        settings = self.app.settings(config)
        ordered = [q for q, s in settings.items() if s.ordered]
        self.snapshots = Snapshotter(
            config.broker.prefix,
            self.queues,
            ordered,
            interval=interval if interval is not None else config.dashboard.interval,
            url=config.broker.url or "",
        )
        self._client: Client | None = None
        self.asgi = Starlette(
            routes=[*api_routes(self), *page_routes(self), *self._routes()],
            middleware=[Middleware(Guard, keys=self.keys, throttle=self.throttle)],
            lifespan=self._lifespan,
            exception_handlers={TrioqueueError: _broker_error},
        )

    @property
    def client(self) -> Client:
        """The broker client of the running dashboard."""
        if self._client is None:
            raise RuntimeError("the dashboard is not running: enter Dashboard.running() first")
        return self._client

    def settings_of(self, queue: str) -> dict[str, Any]:
        """The resolved settings of ``queue`` as a flat JSON-ready mapping."""
        doc = attrs.asdict(self.app.queue_settings(queue, self.config))
        backoff = doc.pop("backoff")
        doc.pop("name")
        return {**doc, **{f"backoff.{k}": v for k, v in backoff.items()}}

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Dashboard]:
        """Connect to the broker and run the snapshot loop until the block exits."""
        b = self.config.broker
        async with broker_url(self.config) as url:
            self.snapshots.url = url  # so that its errors hide the password
            async with (
                self.app.connect(
                    url,
                    prefix=b.prefix,
                    config=self.config,
                    connect_timeout=b.connect_timeout,
                    socket_timeout=b.socket_timeout,
                    tls_ca_file=b.tls_ca_file,
                ) as client,
                trio.open_nursery() as nursery,
            ):
                self._client = client
                try:
                    await nursery.start(self.snapshots.run, client.redis)
                    yield self
                finally:
                    self._client = None
                    nursery.cancel_scope.cancel()

    @asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        async with self.running():
            yield

    def _routes(self) -> list[Route]:
        texts = {name: (files(__package__) / "static" / name).read_bytes() for name in STATIC}

        async def static(request: Request) -> Response:
            name = request.path_params["name"]
            if name not in texts:
                return Response(b"not found", status_code=404, media_type="text/plain")
            return Response(texts[name], media_type=STATIC[name])

        async def login_form(request: Request) -> Response:
            return HTMLResponse(_login_page(request, ""))

        async def login(request: Request) -> Response:
            form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
            given = form.get("token", [""])[0]
            csrf = form.get("csrf", [""])[0]
            session = request.scope["state"]["tq_session"]
            if not self.keys.check_csrf(session, csrf):
                return HTMLResponse(_login_page(request, "the form expired: try again"), 403)
            address = client_address(request.scope)
            wait = self.throttle.retry_after(address)
            if wait:
                problem = f"too many wrong tokens: try again in {wait} s"
                headers = {"retry-after": str(wait)}
                return HTMLResponse(_login_page(request, problem), 429, headers=headers)
            if not self.keys.check_token(given):
                self.throttle.failed(address)
                return HTMLResponse(_login_page(request, "wrong token"), 401)
            root = request.scope.get("root_path", "")
            response = RedirectResponse(f"{root}/", status_code=303)
            value = cookie_header(request.scope, AUTH_COOKIE, self.keys.auth_cookie())
            response.raw_headers.append((b"set-cookie", value))
            return response

        return [
            Route("/static/{name}", static),
            Route("/login", login_form),
            Route("/login", login, methods=["POST"]),
        ]


async def _broker_error(request: Request, exc: Exception) -> Response:
    """A broker error during a request: 403 for a refused permission (an ACL without
    the command), 502 otherwise; the message is the error's own (passwords redacted)."""
    status = 403 if isinstance(exc, BrokerAuthError) else 502
    return JSONResponse({"error": str(exc)}, status_code=status)


def _login_page(request: Request, problem: str) -> str:
    root = request.scope.get("root_path", "")
    csrf = request.scope["state"]["tq_csrf"]
    note = f'<p class="banner">{e(problem)}</p>' if problem else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Log in · trioqueue</title>"
        f'<link rel="stylesheet" href="{e(root)}/static/dashboard.css">'
        f'</head><body><main class="login"><h1>trioqueue</h1>{note}'
        f'<form method="post" action="{e(root)}/login"><input type="hidden" name="csrf" '
        f'value="{e(csrf)}"><label for="token">Dashboard token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        "required autofocus><button>Log in</button></form></main></body></html>"
    )


def create_app(
    config: Config,
    *,
    app: App | None = None,
    token: str | None = None,
    interval: float | None = None,
) -> Starlette:
    """The dashboard as an ASGI app that runs on its own (its lifespan connects to the
    broker and runs the snapshot loop). To mount it in another app, build a
    ``Dashboard`` and enter ``Dashboard.running()`` in that app's lifespan instead."""
    return Dashboard(config, app=app, token=token, interval=interval).asgi
