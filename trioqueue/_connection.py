"""Opening broker connections, classifying their errors, keeping secrets out of logs."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import coredis
import coredis.exceptions as cx
import trio
from coredis.retry import NoRetryPolicy

from trioqueue._errors import BrokerAuthError, BrokerError, BrokerUnavailable

Redis = coredis.Redis[bytes]

SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: "host:notaport" fails only here
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` removed wherever it appears."""
    password = _password(url)
    return text.replace(password, "***") if password else text


def chainable(exc: BaseException, url: str | None) -> BaseException | None:
    """``exc``, to chain as the cause of the ``BrokerError`` that replaces it, or None
    if its text (or that of an error it chains) shows the password of ``url``.

    The original error tells an operator what failed underneath (a TLS handshake, a
    refused connection), but it is printed unredacted with the traceback; and a
    server can echo the AUTH arguments in an error reply (``unknown command 'AUTH',
    with args beginning with: ...`` when AUTH is renamed away).
    """
    password = _password(url)
    if not password:
        return exc
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if password in str(link):
            return None
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return exc


def _password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def check_url(url: str) -> None:
    """Raise ``BrokerError`` if ``url`` has a scheme trioqueue cannot use."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else redact_url(url)
        raise BrokerError(
            f"unsupported broker URL scheme {shown!r}: use redis://, rediss:// or unix://"
        )


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that a reconnect may cure (network, restart, timeout)."""
    if isinstance(exc, cx.AuthenticationError | cx.AuthorizationError):
        return False
    if isinstance(exc, cx.ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return True
    if isinstance(exc, cx.TryAgainError | cx.ClusterDownError):
        # coredis raises these codes as classes and strips them from the message.
        return True
    if isinstance(exc, cx.ResponseError):
        msg = str(exc)
        # The server is restarting, loading, out of memory, busy with a script or
        # refusing writes for a moment: ride it out like a lost connection.
        return (
            msg.startswith(
                ("LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "OOM", "BUSY", "READONLY")
            )
            or "OOM command not allowed" in msg
        )
    return isinstance(exc, BaseExceptionGroup) and all(
        is_connection_error(e) for e in exc.exceptions
    )


def classify(exc: BaseException, url: str | None) -> BrokerError:
    """Turn a client exception into a ``BrokerError`` with a clear, redacted message."""
    denied = isinstance(exc, cx.AuthenticationError | cx.AuthorizationError) or (
        isinstance(exc, cx.ResponseError) and _denied(str(exc))
    )
    return broker_error(exc, url, denied=denied, unreachable=is_connection_error(exc))


def _denied(text: str) -> bool:
    return text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")) or "no permissions" in text


def broker_error(
    exc: BaseException, url: str | None, *, denied: bool, unreachable: bool
) -> BrokerError:
    """The ``BrokerError`` for a client error already sorted by the client's own
    exception classes (coredis or redis-py); the message is redacted."""
    where = redact_url(url) if url else "the broker"
    detail = redact(str(exc) or type(exc).__name__, url)
    if denied or _denied(str(exc)):
        return BrokerAuthError(f"broker {where} rejected the credentials: {detail}")
    if "OOM command not allowed" in str(exc):
        return BrokerError(
            f"broker {where} is out of memory (maxmemory reached), the command was refused: "
            f"{detail}"
        )
    if unreachable:
        return BrokerUnavailable(f"cannot reach broker {where}: {detail}")
    return BrokerError(f"broker {where} error: {detail}")


def make_client(
    url: str,
    *,
    connect_timeout: float = 5.0,
    socket_timeout: float = 30.0,
    tls_ca_file: str | None = None,
    client_name: str | None = None,
) -> Redis:
    """A coredis client for ``url``; enter it with ``async with`` before use.

    The client does not retry on its own: a retried script after an unknown outcome
    could apply twice, so callers decide (see ``_worker/_outage.py``).
    """
    check_url(url)
    kwargs: dict[str, Any] = {
        "connect_timeout": connect_timeout,
        "stream_timeout": socket_timeout,
        "decode_responses": False,
        "retry_policy": NoRetryPolicy(),
        "client_name": client_name,
    }
    if url.startswith("rediss://"):
        # Verify the certificate *and* the host name (the client library's own
        # default checks only the former); a private CA comes from tls_ca_file.
        kwargs["ssl_context"] = ssl.create_default_context(cafile=tls_ca_file)
    try:
        return coredis.Redis.from_url(url, **kwargs)
    except (ValueError, TypeError) as exc:
        raise BrokerError(
            f"invalid broker URL {redact_url(url)}: {redact(str(exc), url)}"
        ) from chainable(exc, url)


@asynccontextmanager
async def connected(
    url: str,
    *,
    connect_timeout: float = 5.0,
    socket_timeout: float = 30.0,
    tls_ca_file: str | None = None,
    client_name: str | None = None,
    verify: bool = True,
) -> AsyncIterator[Redis]:
    """Open a client and, if ``verify``, PING it; raise a ``BrokerError`` on failure."""
    client = make_client(
        url,
        connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        tls_ca_file=tls_ca_file,
        client_name=client_name,
    )
    try:
        async with client:
            if verify:
                await ping(client, url, timeout=connect_timeout + 1.0)
            yield client
    except BaseExceptionGroup as group:
        # The client runs its connections in a task group; callers should see the
        # error their own code raised, not a group wrapping it.
        inner = sole_exception(group)
        if inner is None:
            raise
        if isinstance(inner, cx.RedisError) and not isinstance(inner, BrokerError):
            raise classify(inner, url) from chainable(inner, url)
        # Hide the group around it, but keep the cause it came with.
        raise inner from inner.__cause__


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception a (nested) group wraps, or None if it holds several."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


async def ping(client: Redis, url: str | None, *, timeout: float) -> None:
    """PING with a deadline; raise a classified ``BrokerError`` on failure."""
    try:
        with trio.fail_after(timeout):
            await client.ping()
    except trio.TooSlowError:
        raise BrokerUnavailable(
            f"cannot reach broker {redact_url(url) if url else ''}: no answer within {timeout}s"
        ) from None
    except BrokerError:
        raise
    except Exception as exc:
        raise classify(exc, url) from chainable(exc, url)


def as_text(value: Any) -> str:
    """A reply value as text: Redis replies are bytes unless decoding was asked for."""
    return value.decode() if isinstance(value, bytes) else str(value)
