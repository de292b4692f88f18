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
from trioqueue._redis._sentinel import SentinelResolver, is_sentinel_url, parse_sentinel_url

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
    ``rediss://`` and ``unix://``, the same following a Sentinel service's primary for
    ``redis+sentinel://`` and ``rediss+sentinel://``, ``ClusterRedis`` for
    ``redis+cluster://`` and ``rediss+cluster://``. It connects on first use; every
    connection, and the watchdog tasks, end on exit."""
    timeout = None if socket_timeout is None or math.isinf(socket_timeout) else socket_timeout
    options = {
        "connect_timeout": connect_timeout,
        "socket_timeout": timeout,
        "tls_ca_file": tls_ca_file,
        "client_name": client_name,
    }
    cluster = is_cluster_url(url)
    resolver: SentinelResolver | None = None
    if cluster:
        seeds = parse_cluster_url(url)
    elif is_sentinel_url(url):
        target = parse_sentinel_url(url)
        seeds = [target.node]
        resolver = SentinelResolver(
            target, connect_timeout=connect_timeout, tls_ca_file=tls_ca_file
        )
    else:
        seeds = [parse_url(url)]
    redis: AnyRedis | None = None
    try:
        async with trio.open_nursery() as nursery:
            if cluster:
                redis = ClusterRedis(seeds, nursery, **options)  # type: ignore[arg-type]
            else:
                single = redis = Redis(seeds[0], resolver=resolver, **options)  # type: ignore[arg-type]
                nursery.start_soon(single.watch)
                if resolver is not None:
                    # The service moved: every connection to the old primary retires.
                    nursery.start_soon(resolver.follow, single.retire_all)
            try:
                yield redis
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if redis is not None:
            redis.close()
