"""Opening coredis connections to the broker (the Trio client's and the workers')."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import coredis.exceptions as cx
import trio
from coredis.retry import NoRetryPolicy

from trioqueue._broker_errors import classify
from trioqueue._errors import BrokerError, BrokerUnavailable
from trioqueue._redact import chainable, redact, redact_url

Redis = coredis.Redis[bytes]

SCHEMES = ("redis", "rediss", "unix")


def check_url(url: str) -> None:
    """Raise ``BrokerError`` if ``url`` has a scheme trioqueue cannot use."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else redact_url(url)
        raise BrokerError(
            f"unsupported broker URL scheme {shown!r}: use redis://, rediss:// or unix://"
        )


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
