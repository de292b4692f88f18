"""``ClusterRedis``: the same commands as ``Redis``, on a Redis/Valkey Cluster.

It holds one ``Redis`` per primary and a map from each of the 16384 slots to its
primary, read with ``CLUSTER SLOTS`` from any node that answers (the seeds first).
A command goes to the primary of its key's slot (``_slots.py``); one without a key to
any primary. Redirections are followed: ``MOVED`` refreshes the map and sends the
command again to the new owner (nothing ran), ``ASK`` sends ``ASKING`` and the
command, in one write, to the node importing the slot. ``TRYAGAIN``, ``CLUSTERDOWN``
and a lost connection are raised for the caller to retry with backoff, like any
transient failure (the map is refreshed first, for the retry).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from trioqueue._redis._address import Address
from trioqueue._redis._client import Redis
from trioqueue._redis._commands import Commands
from trioqueue._redis._connection import Arg
from trioqueue._redis._errors import ConnectionLost, RedisError, ReplyError
from trioqueue._redis._pubsub import PubSub
from trioqueue._redis._slots import SLOTS, command_key, key_slot

__all__ = ["ClusterRedis"]

# Redirections followed for one command before giving up (a slot moving twice).
MAX_REDIRECTS = 5
Node = tuple[str, int]


class ClusterRedis(Commands):
    """Commands on a cluster; see the module docstring. Get one from ``open_redis``
    with a ``redis+cluster://`` URL."""

    def __init__(
        self,
        seeds: Sequence[Address],
        nursery: trio.Nursery,
        *,
        connect_timeout: float,
        socket_timeout: float | None,
        tls_ca_file: str | None,
        client_name: str | None,
    ) -> None:
        self._seeds = list(seeds)
        self._template = seeds[0]
        self._nursery = nursery
        self._options: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            "tls_ca_file": tls_ca_file,
            "client_name": client_name,
        }
        self._nodes: dict[Node, Redis] = {}
        self._slots: list[Node | None] = [None] * SLOTS
        self._primaries: list[Node] = []
        self._refreshing = trio.Lock()

    # -- routing

    def node_of(self, key: str | bytes) -> str:
        """``host:port`` of the primary that holds ``key`` (as last known)."""
        node = self._slots[key_slot(key)]
        return f"{node[0]}:{node[1]}" if node else "?"

    @property
    def primaries(self) -> list[Redis]:
        """One client per primary, as last known."""
        return [self._node(n) for n in self._primaries]

    def _node(self, node: Node) -> Redis:
        redis = self._nodes.get(node)
        if redis is None:
            address = attrs.evolve(self._template, host=node[0], port=node[1], db=0)
            redis = self._nodes[node] = Redis(address, **self._options)
            self._nursery.start_soon(redis.watch)
        return redis

    async def _route(self, key: Arg | None) -> Redis:
        if not self._primaries:
            await self.refresh()
        if key is None:
            return random.choice(self.primaries)
        node = self._slots[key_slot(key if isinstance(key, str | bytes) else str(key))]
        if node is None:
            await self.refresh()
            node = self._slots[key_slot(key if isinstance(key, str | bytes) else str(key))]
            if node is None:
                raise ReplyError("CLUSTERDOWN Hash slot not served")
        return self._node(node)

    async def refresh(self) -> None:
        """Read the slot map again from the first node that answers."""
        async with self._refreshing:
            candidates = [*self._nodes.values(), *(Redis(a, **self._options) for a in self._seeds)]
            error: BaseException | None = None
            for redis in candidates:
                try:
                    with trio.fail_after(self._options["connect_timeout"] + 1):
                        reply = await redis.execute("CLUSTER", "SLOTS")
                except (RedisError, OSError, trio.TooSlowError) as exc:
                    error = exc
                    continue
                finally:
                    if redis not in self._nodes.values():
                        redis.close()
                self._apply(reply)
                return
            raise ConnectionLost(f"no cluster node answered CLUSTER SLOTS: {error!r}") from error

    def _apply(self, reply: Sequence[Any]) -> None:
        slots: list[Node | None] = [None] * SLOTS
        for start, end, primary, *_replicas in reply:
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            node = (host or self._template.host or "127.0.0.1", int(primary[1]))
            for slot in range(int(start), int(end) + 1):
                slots[slot] = node
        self._slots = slots
        live = set(slots)
        self._primaries = sorted(n for n in live if n is not None)
        for node in [n for n in self._nodes if n not in live]:
            self._nodes.pop(node).close()

    # -- commands

    async def execute(self, *args: Arg) -> Any:
        """Send one command to the primary of its key; follow redirections."""
        return await self._redirected(args, None)

    async def execute_blocking(self, args: Sequence[Arg], *, block: float) -> Any:
        """A command that may wait ``block`` seconds, on a connection of its own."""
        return await self._redirected(args, block)

    async def _redirected(self, args: Sequence[Arg], block: float | None) -> Any:
        redis = await self._route(command_key(args))
        for _ in range(MAX_REDIRECTS):
            try:
                if block is None:
                    return await redis.execute(*args)
                return await redis.execute_blocking(args, block=block)
            except ReplyError as exc:
                code = exc.code
                if code == "MOVED":
                    await self.refresh()
                    redis = self._node(_target(exc))
                    continue
                if code == "ASK":
                    target = self._node(_target(exc))
                    _asking, reply = await target.pipeline([("ASKING",), tuple(args)])
                    if isinstance(reply, ReplyError):
                        raise reply from None
                    return reply
                if code in ("TRYAGAIN", "CLUSTERDOWN"):
                    await self.refresh()
                raise
            except ConnectionLost:
                # The node may be gone for good (failed over): read the map anew.
                with trio.move_on_after(self._options["connect_timeout"]):
                    await self.refresh()
                raise
        raise ReplyError(f"TRYAGAIN too many redirections for {args[0]!r}")

    async def pipeline_blocking(
        self, commands: Sequence[Sequence[Arg]], *, block: float
    ) -> list[Any]:
        """Several commands on one connection of their own to the primary of the first
        command's key (a script and then ``WAIT``: both must reach the same node)."""
        redis = await self._route(command_key(commands[0]))
        replies = await redis.pipeline_blocking(commands, block=block)
        first = replies[0] if replies else None
        if isinstance(first, ReplyError) and first.code == "MOVED":
            await self.refresh()
            redis = self._node(_target(first))
            replies = await redis.pipeline_blocking(commands, block=block)
        return replies

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands, each to the primary of its key, one pipeline per node;
        replies in order, error replies as values (redirected ones sent again)."""
        by_node: dict[int, tuple[Redis, list[int]]] = {}
        for i, command in enumerate(commands):
            redis = await self._route(command_key(command))
            by_node.setdefault(id(redis), (redis, []))[1].append(i)
        replies: list[Any] = [None] * len(commands)
        for redis, indexes in by_node.values():
            got = await redis.pipeline([commands[i] for i in indexes])
            for i, reply in zip(indexes, got, strict=True):
                if isinstance(reply, ReplyError) and reply.code in ("MOVED", "ASK"):
                    try:
                        reply = await self.execute(*commands[i])
                    except ReplyError as exc:
                        reply = exc
                replies[i] = reply
        return replies

    async def script_load(self, source: str) -> bytes:
        """Load a script on every primary (a script call may go to any of them).

        The map is read first: a ``NOSCRIPT`` is most often a replica just promoted
        (scripts loaded on a primary are not replicated), which a stale map would
        still list as a replica."""
        await self.refresh()
        sha = b""
        for redis in self.primaries:
            sha = await redis.script_load(source)
        return sha

    async def info(self, section: str) -> dict[str, str]:
        """``INFO`` of the primary restarted last (the least ``uptime_in_seconds``): a
        check for a recent restart must see the most recent one."""
        if not self._primaries:
            await self.refresh()
        infos = [await redis.info(section) for redis in self.primaries]
        return min(infos, key=lambda i: float(i.get("uptime_in_seconds", 1e18)))

    @asynccontextmanager
    async def subscribe(self, channels: Sequence[str]) -> AsyncIterator[PubSub]:
        """A subscription on one primary (a ``PUBLISH`` reaches every node)."""
        redis = await self._route(None)
        async with redis.subscribe(channels) as pubsub:
            yield pubsub

    def close(self) -> None:
        """Close every node's connections."""
        for redis in self._nodes.values():
            redis.close()
        self._nodes.clear()


def _target(exc: ReplyError) -> Node:
    # "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"
    where = str(exc).split()[2]
    host, _, port = where.rpartition(":")
    return host, int(port)
