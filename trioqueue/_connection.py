"""Opening broker connections (the Trio client's and the workers')."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from trioqueue._broker_errors import classify
from trioqueue._errors import BrokerError, BrokerUnavailable
from trioqueue._redact import chainable, redact, redact_url
from trioqueue._redis import (
    AnyRedis,
    RedisError,
    is_cluster_url,
    is_sentinel_url,
    open_redis,
    parse_cluster_url,
    parse_sentinel_url,
    parse_url,
)

Redis = AnyRedis

__all__ = ["SCHEMES", "Redis", "as_text", "check_url", "connected", "ping", "sole_exception"]

SCHEMES = (
    "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
    "rediss+sentinel",
)  # fmt: skip


def check_url(url: str) -> None:
    """Raise ``BrokerError`` if ``url`` has a scheme trioqueue cannot use or is malformed."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else redact_url(url)
        raise BrokerError(
            f"unsupported broker URL scheme {shown!r}: use redis://, rediss:// or unix:// "
            "(or redis+cluster://, rediss+cluster:// for a Cluster, redis+sentinel://, "
            "rediss+sentinel:// for Sentinel)"
        )
    try:
        if is_sentinel_url(url):
            parse_sentinel_url(url)
        elif is_cluster_url(url):
            parse_cluster_url(url)
        else:
            parse_url(url)
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
    """Open a client and, if ``verify``, PING it; raise a ``BrokerError`` on failure.

    The client does not retry on its own: a retried script after an unknown outcome
    could apply twice, so callers decide (see ``_worker/_outage.py``). With
    ``rediss://`` the certificate *and* the host name are verified; a private CA comes
    from ``tls_ca_file``.
    """
    check_url(url)
    try:
        async with open_redis(
            url,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            tls_ca_file=tls_ca_file,
            client_name=client_name,
        ) as client:
            if verify:
                await ping(client, url, timeout=connect_timeout + 1.0)
            yield client
    except BaseExceptionGroup as group:
        # The client runs its watchdog in a nursery; callers should see the error
        # their own code raised, not a group wrapping it.
        inner = sole_exception(group)
        if inner is None:
            raise
        if isinstance(inner, RedisError) and not isinstance(inner, BrokerError):
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
