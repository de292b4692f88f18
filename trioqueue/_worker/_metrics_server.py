"""The metrics server: ``GET /metrics`` and ``GET /healthz`` over HTTP/1.1, on Trio.

A small server of its own rather than prometheus-client's (which serves from a
thread) or a web framework (a dependency for two fixed pages): one request per
connection, answered and closed. ``/metrics`` is the supervisor's registry in the
Prometheus text format; ``/healthz`` answers ``200 ok`` while the worker's heartbeat
is current and its broker reachable, else ``503`` with the reason on one line.

Cancellation: ``run`` serves until its scope (``stop``) or the supervisor's loops
nursery is cancelled; each request has ``REQUEST_TIMEOUT`` seconds to arrive and be
answered, so a client that connects and sends nothing holds nothing for long.

Error handling: a port that cannot be bound raises ``ConfigError`` naming
``metrics.port`` (the worker does not start); a broken connection is dropped; an
error while answering is logged and answered with 500, it never ends the worker.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from trioqueue._errors import ConfigError
from trioqueue._worker._liveness import Liveness
from trioqueue._worker._outage import OutageTracker

__all__ = ["MAX_REQUEST", "REQUEST_TIMEOUT", "MetricsServer", "unhealthy"]

log = logging.getLogger("trioqueue.worker.metrics")

# Seconds a connection may take to send its request and receive the answer.
REQUEST_TIMEOUT = 5.0
# The longest request head read (request line and headers).
MAX_REQUEST = 8192
_TEXT = "text/plain; charset=utf-8"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


def unhealthy(outage: OutageTracker, liveness: Liveness, *, heartbeat_ttl: float) -> str | None:
    """Why the worker is not healthy, in one line; None when it is."""
    if outage.down_since is not None:
        since = dt.datetime.fromtimestamp(outage.down_since, tz=dt.UTC)
        age = dt.datetime.now(tz=dt.UTC) - since
        return (
            f"broker unreachable since {since.isoformat(timespec='seconds')} "
            f"({age.total_seconds():.1f}s)"
        )
    last = liveness.last_beat
    if last is None:
        return "no heartbeat written yet"
    age_s = trio.current_time() - last
    if age_s > heartbeat_ttl:
        return f"heartbeat stale (last {age_s:.1f}s ago, ttl {heartbeat_ttl:g}s)"
    return None


class MetricsServer:
    """Serves ``registry`` and the health check on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], str | None],
        *,
        host: str,
        port: int,
        before: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._health = health
        # Awaited with the request's path before it is answered: a parent of several
        # worker processes reads its children's figures there (``_parent/_metrics.py``).
        self._before = before
        self._host = host
        self._port = port
        self._scope = trio.CancelScope()

    def stop(self) -> None:
        """Stop serving (requests being answered are cut off)."""
        self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the bound port through ``task_status``, serve until cancelled."""
        with self._scope:
            try:
                listeners = await trio.open_tcp_listeners(self._port, host=self._host)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise ConfigError(
                    [f"metrics.port: cannot listen on {self._host}:{self._port}: {reason}"]
                ) from None
            port = int(listeners[0].socket.getsockname()[1])
            log.info("serving metrics on http://%s:%d/metrics", self._host, port)
            task_status.started(port)
            await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                with trio.move_on_after(REQUEST_TIMEOUT):
                    head = await _read_head(stream)
                    if head is None:
                        await stream.send_all(_response(431, _TEXT, b"request too large\n"))
                        return
                    if self._before is not None:
                        await self._before(_path(head))
                    await stream.send_all(self.answer(head))
                    return
                with trio.move_on_after(1.0):
                    await stream.send_all(_response(408, _TEXT, b"request timeout\n"))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the client went away

    def answer(self, head: bytes) -> bytes:
        """The whole response to a request whose head (up to the blank line) is ``head``."""
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        except ValueError:
            return _response(400, _TEXT, b"bad request line\n")
        if not version.startswith("HTTP/1."):
            return _response(400, _TEXT, b"HTTP/1.x only\n")
        if method not in ("GET", "HEAD"):
            return _response(405, _TEXT, b"GET only\n", extra="Allow: GET, HEAD\r\n")
        path = target.split("?", 1)[0]
        try:
            if path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
            elif path == "/healthz":
                reason = self._health()
                status = 200 if reason is None else 503
                ctype, body = _TEXT, f"{reason or 'ok'}\n".encode()
            else:
                status, ctype, body = 404, _TEXT, b"not found: try /metrics or /healthz\n"
        except Exception:
            log.exception("metrics server: answering %s failed", path)
            status, ctype, body = 500, _TEXT, b"internal error (see the worker's log)\n"
        return _response(status, ctype, body, head_only=method == "HEAD")


def _path(head: bytes) -> str:
    """The path of the request's target ("" if the request line is malformed)."""
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    return parts[1].split("?", 1)[0] if len(parts) == 3 else ""


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request up to its blank line (None if longer than ``MAX_REQUEST``); what
    arrived before the peer closed, if it closed early."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_REQUEST:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _response(
    status: int, ctype: str, body: bytes, *, extra: str = "", head_only: bool = False
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)
