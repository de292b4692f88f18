"""The redis-py side of ``SyncClient``: its client (one server, or a cluster), the
script driver on it, and what its exceptions mean. Only ``SyncClient`` imports this
module, so an application that never makes one never imports redis-py.

Neither retries on its own: a send whose connection failed may or may not have
happened, and running the script again could enqueue it twice (see
docs/explanation/delivery.md). A cluster client still follows ``MOVED`` and ``ASK``,
which are answers from a server that did not run the command.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import redis as redis_py
import redis.exceptions as rx
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError

from trioqueue._broker_errors import TRANSIENT_CODES, broker_error
from trioqueue._errors import BrokerAuthError, BrokerError
from trioqueue._redis import is_cluster_url, parse_cluster_url
from trioqueue._scripts._call import Arg, Call, raise_translated

__all__ = ["SyncRedis", "classify_sync", "run_sync", "run_then_sync", "sync_redis"]

R = TypeVar("R")
# The same for redis-py, which strips the code of the replies it has classes for.
_SYNC_TRANSIENT = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, rx.BusyLoadingError)

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


def run_then_sync(
    redis: redis_py.Redis | RedisCluster, call: Call[R], then: Sequence[Arg]
) -> tuple[R, Any]:
    """``run_then`` on a redis-py client: one pipeline, so one connection."""
    sha, keys, args = call.script.sha, call.keys, call.args

    def both() -> list[Any]:
        with redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(sha, len(keys), *keys, *args)
            pipe.execute_command(*then)
            replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    raw, after = both()
    if isinstance(raw, rx.NoScriptError):
        redis.script_load(call.script.source)
        raw, after = both()
    if isinstance(raw, rx.ResponseError):
        raise_translated(call, raw)
        raise raw
    if isinstance(after, Exception):
        raise after
    return call.parse(raw), after


def run_sync(redis: redis_py.Redis | RedisCluster, call: Call[R]) -> R:
    """Run ``call`` on a redis-py client and return its parsed reply."""
    sha, keys, args = call.script.sha, call.keys, call.args
    try:
        try:
            raw = redis.evalsha(sha, len(keys), *keys, *args)
        except rx.NoScriptError:
            redis.script_load(call.script.source)
            raw = redis.evalsha(sha, len(keys), *keys, *args)
    except rx.ResponseError as exc:
        raise_translated(call, exc)
        raise
    return call.parse(raw)


def classify_sync(exc: rx.RedisError, url: str | None) -> BrokerError:
    """Turn a redis-py exception into the ``BrokerError`` ``classify`` would give."""
    if isinstance(exc, MasterNotFoundError):
        # Its text lists the repr of every sentinel client; say what it means instead.
        text = str(exc)
        service = text.split("'")[1] if text.count("'") >= 2 else "?"
        if text.count("AuthenticationError") and "TimeoutError" not in text:
            return BrokerAuthError(
                f"no primary found for service {service!r}: the sentinels refused the "
                "credentials (sentinel credentials: sentinel_username/_password)"
            )
        exc = MasterNotFoundError(f"no primary found for service {service!r}")
    return broker_error(
        exc,
        url,
        denied=isinstance(exc, rx.AuthenticationError | rx.NoPermissionError),
        unreachable=isinstance(exc, _SYNC_TRANSIENT)
        or str(exc).split(" ", 1)[0] in TRANSIENT_CODES,
    )
