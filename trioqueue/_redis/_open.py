"""``open_redis``: a client for a broker URL, one server or a cluster, closed on exit."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import trio

from trioqueue._redis._address import is_cluster_url, parse_cluster_url, parse_url
from trioqueue._redis._client import Redis
from trioqueue._redis._cluster import ClusterRedis

__all__ = ["AnyRedis", "open_redis"]

AnyRedis: TypeAlias = Redis | ClusterRedis


@asynccontextmanager
async def open_redis(
    url: str,
    *,
    connect_timeout: float = 5.0,
    socket_timeout: float | None = 30.0,
    tls_ca_file: str | None = None,
    client_name: str | None = None,
) -> AsyncIterator[AnyRedis]:
    """A client for ``url`` (``ValueError`` if malformed): ``Redis`` for ``redis://``,
    ``rediss://`` and ``unix://``, ``ClusterRedis`` for ``redis+cluster://`` and
    ``rediss+cluster://``. It connects on first use; every connection, and the
    watchdog tasks, end on exit."""
    timeout = None if socket_timeout is None or math.isinf(socket_timeout) else socket_timeout
    options = {
        "connect_timeout": connect_timeout,
        "socket_timeout": timeout,
        "tls_ca_file": tls_ca_file,
        "client_name": client_name,
    }
    cluster = is_cluster_url(url)
    seeds = parse_cluster_url(url) if cluster else [parse_url(url)]
    redis: AnyRedis | None = None
    try:
        async with trio.open_nursery() as nursery:
            if cluster:
                redis = ClusterRedis(seeds, nursery, **options)  # type: ignore[arg-type]
            else:
                redis = Redis(seeds[0], **options)  # type: ignore[arg-type]
                nursery.start_soon(redis.watch)
            try:
                yield redis
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if redis is not None:
            redis.close()
