"""The dashboard's guard: who may see it, which POSTs count, and the security headers.

``Guard`` is an ASGI middleware around every route:

- With a token set, a request is let through if it carries ``Authorization: Bearer
  <token>`` or the login cookie (``tq_auth``, an HMAC of the token: the token itself is
  never stored in the browser); otherwise the API answers 401 and pages redirect to
  the login form. Without a token, only requests whose ``Host`` is a loopback name
  are served (a DNS-rebinding page cannot reach the dashboard through its own host
  name).
- A wrong token counts against the client's address (``_throttle.py``): after five
  within a minute, that address gets 429 for the rest of the minute.
- Every POST, except one authorised with a bearer token (which a browser never sends
  on its own), must carry the session's CSRF token in ``X-CSRF-Token`` (the login form:
  in its ``csrf`` field) and, when the browser sends ``Origin``, come from the
  dashboard's own origin.
- Every response gets a Content-Security-Policy without inline scripts or styles,
  ``frame-ancestors 'none'``, ``X-Content-Type-Options: nosniff`` and no referrer to other sites
  (``same-origin``: with ``no-referrer`` a browser sends ``Origin: null`` on forms).

The CSRF token is an HMAC of a random session id kept in the ``tq_sid`` cookie
(HttpOnly, SameSite=Strict), keyed by a secret made when the dashboard starts.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from trioqueue.dashboard._throttle import Throttle, client_address

__all__ = ["Guard", "Secrets", "is_loopback"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AUTH_COOKIE = "tq_auth"
SESSION_COOKIE = "tq_sid"
CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
# Paths served to anyone: the login form and the static files (no data in either).
PUBLIC_PREFIXES = ("/login", "/static/")


def host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:80`` -> ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback(host: str) -> bool:
    """True for ``localhost`` or a loopback address (``127.0.0.0/8``, ``::1``, with or
    without brackets); a name such as ``127.example.com`` is not one."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Secrets:
    """The token (if any) and the per-process key that CSRF tokens and cookies use."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._key = secrets.token_bytes(32)

    def _mac(self, what: str) -> str:
        return hmac.new(self._key, what.encode(), hashlib.sha256).hexdigest()

    def auth_cookie(self) -> str:
        """The login cookie's value: proves the browser once gave the token."""
        return self._mac(f"auth:{self.token}")

    def csrf(self, session: str) -> str:
        """The CSRF token of a session id."""
        return self._mac(f"csrf:{session}")

    def check_token(self, given: str) -> bool:
        """True if ``given`` is the token (constant time)."""
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def check_csrf(self, session: str | None, given: str | None) -> bool:
        """True if ``given`` is the CSRF token of ``session``."""
        return bool(session and given) and hmac.compare_digest(self.csrf(str(session)), str(given))


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies by name."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(_headers(scope).get("cookie", ""))
    except Exception:  # a malformed Cookie header: as if there were none
        return {}
    return {k: m.value for k, m in jar.items()}


def route_path(scope: Scope) -> str:
    """The path below the dashboard's mount point."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def cookie_header(scope: Scope, name: str, value: str, *, max_age: int | None = None) -> bytes:
    """A Set-Cookie value: HttpOnly, SameSite=Strict, scoped to the mount point."""
    parts = [f"{name}={value}", f"Path={scope.get('root_path') or '/'}", "HttpOnly"]
    parts.append("SameSite=Strict")
    if scope.get("scheme") == "https":
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts).encode()


class Guard:
    """ASGI middleware enforcing the rules in this module's docstring."""

    def __init__(self, app: ASGIApp, *, keys: Secrets, throttle: Throttle) -> None:
        self.app = app
        self.keys = keys
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then call the app with headers added to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        jar = cookies(scope)
        path = route_path(scope)
        extra = list(SECURITY_HEADERS)
        if not path.startswith("/static/"):
            extra.append((b"cache-control", b"no-store"))
        session = jar.get(SESSION_COOKIE)
        if not session:
            session = secrets.token_urlsafe(24)
            extra.append((b"set-cookie", cookie_header(scope, SESSION_COOKIE, session)))
        scope.setdefault("state", {})["tq_session"] = session
        scope["state"]["tq_csrf"] = self.keys.csrf(session)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        refusal = self._refusal(scope, headers, jar, path, session)
        if refusal is not None:
            status, body, more = refusal
            await send_with_headers(
                {"type": "http.response.start", "status": status, "headers": more}
            )
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(
        self, scope: Scope, headers: dict[str, str], jar: dict[str, str], path: str, session: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """None to serve the request, else (status, body, headers) to answer with."""
        api = path.startswith("/api/")
        json = [(b"content-type", b"application/json")]
        if self.keys.token is None and not is_loopback(host_name(headers.get("host", ""))):
            msg = b"this dashboard has no token: it only answers on a loopback address"
            return 403, msg, [(b"content-type", b"text/plain; charset=utf-8")]
        bearer = headers.get("authorization", "")
        by_bearer = False
        if bearer.startswith("Bearer ") and self.keys.token is not None:
            address = client_address(scope)
            wait = self.throttle.retry_after(address)
            if wait:
                body = b'{"error": "too many wrong tokens from this address: try again later"}'
                return 429, body, [*json, (b"retry-after", str(wait).encode())]
            by_bearer = self.keys.check_token(bearer[7:])
            if not by_bearer:
                self.throttle.failed(address)
        public = path.startswith(PUBLIC_PREFIXES)
        if self.keys.token is not None and not public and not by_bearer:
            cookie = jar.get(AUTH_COOKIE, "")
            if not hmac.compare_digest(cookie, self.keys.auth_cookie()):
                if api:
                    challenge = [*json, (b"www-authenticate", b'Bearer realm="trioqueue"')]
                    return 401, b'{"error": "unauthorized: a token is required"}', challenge
                login = f"{scope.get('root_path', '')}/login".encode()
                return 303, b"", [(b"location", login)]
        if scope["method"] not in ("GET", "HEAD") and not by_bearer:
            origin = headers.get("origin")
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin is not None and origin != own:
                return 403, b'{"error": "cross-origin request refused"}', json
            if headers.get("sec-fetch-site") == "cross-site":
                return 403, b'{"error": "cross-site request refused"}', json
            # The login form carries its token in the form body; its handler checks it.
            if path != "/login" and not self.keys.check_csrf(session, headers.get(CSRF_HEADER)):
                return 403, b'{"error": "missing or wrong CSRF token"}', json
        return None
