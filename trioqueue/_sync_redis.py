"""The redis-py client ``SyncClient`` runs on: one server, or a cluster.

Neither retries on its own: a send whose connection failed may or may not have
happened, and running the script again could enqueue it twice (see
docs/explanation/delivery.md). A cluster client still follows ``MOVED`` and ``ASK``,
which are answers from a server that did not run the command.
"""

from __future__ import annotations

from typing import Any

import redis as redis_py
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from trioqueue._redis import is_cluster_url, parse_cluster_url

__all__ = ["SyncRedis", "sync_redis"]

SyncRedis = redis_py.Redis | RedisCluster


def sync_redis(url: str, **kwargs: Any) -> SyncRedis:
    """A redis-py client for ``url`` (``ValueError`` if malformed), without retries."""
    if not is_cluster_url(url):
        return redis_py.Redis.from_url(url, **kwargs)
    seeds = parse_cluster_url(url)
    first = seeds[0]
    kwargs.pop("health_check_interval", None)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    return RedisCluster(
        startup_nodes=[
            ClusterNode(s.host or "127.0.0.1", s.port)  # type: ignore[no-untyped-call]
            for s in seeds
        ],
        username=first.username,
        password=first.password,
        ssl=first.tls,
        **kwargs,
    )
