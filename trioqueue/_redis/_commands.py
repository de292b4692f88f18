"""The commands trioqueue uses, as typed methods over ``execute``.

Replies are converted as little as the callers need: strings stay bytes, stream
entries become ``(id, {field: value})`` pairs with the id as text (the workers key
their bookkeeping by it), and a deleted entry's fields are ``None``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from trioqueue._redis._connection import Arg

__all__ = ["Commands", "Entry", "entries", "field_map"]

Entry = tuple[str, dict[bytes, bytes] | None]


def field_map(flat: Sequence[Any] | None) -> dict[Any, Any] | None:
    """``[k1, v1, k2, v2, ...]`` as ``{k1: v1, ...}`` (None stays None)."""
    if flat is None:
        return None
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def entries(raw: Sequence[Any] | None) -> list[Entry]:
    """An ``XRANGE`` reply (``[[id, [field, value, ...]], ...]``) as entries."""
    if not raw:
        return []
    return [(eid.decode(), field_map(flat)) for eid, flat in raw]


def stream_entries(raw: Sequence[Any] | None) -> list[Entry]:
    """An ``XREAD``/``XREADGROUP`` reply (per stream: name, entries), flattened."""
    if not raw:
        return []
    out: list[Entry] = []
    for _stream, items in raw:
        out.extend(entries(items))
    return out


class Commands(ABC):
    """Typed commands over ``execute`` and ``execute_blocking``, which ``Redis`` (one
    server) and ``ClusterRedis`` (routing by key slot) provide."""

    @abstractmethod
    async def execute(self, *args: Arg) -> Any:
        """Send one command; return its raw reply."""

    @abstractmethod
    async def execute_blocking(self, args: Sequence[Arg], *, block: float) -> Any:
        """Send a command that may wait ``block`` seconds on the server, on a
        connection of its own."""

    async def ping(self) -> None:
        """``PING``."""
        await self.execute("PING")

    async def get(self, key: str) -> bytes | None:
        """``GET``."""
        reply: bytes | None = await self.execute("GET", key)
        return reply

    async def hget(self, key: str, field: str) -> bytes | None:
        """``HGET``."""
        reply: bytes | None = await self.execute("HGET", key, field)
        return reply

    async def set(self, key: str, value: Arg, *, px: int | None = None) -> None:
        """``SET key value [PX px]``."""
        if px is None:
            await self.execute("SET", key, value)
        else:
            await self.execute("SET", key, value, "PX", px)

    async def delete(self, keys: Iterable[str]) -> int:
        """``DEL``; how many existed."""
        return int(await self.execute("DEL", *keys))

    async def exists(self, keys: Iterable[str]) -> int:
        """``EXISTS``; how many exist."""
        return int(await self.execute("EXISTS", *keys))

    async def xlen(self, key: str) -> int:
        """``XLEN``."""
        return int(await self.execute("XLEN", key))

    async def zcard(self, key: str) -> int:
        """``ZCARD``."""
        return int(await self.execute("ZCARD", key))

    async def zrem(self, key: str, members: Iterable[Arg]) -> int:
        """``ZREM``."""
        return int(await self.execute("ZREM", key, *members))

    async def zrangebyscore(self, key: str, low: Arg, high: Arg) -> list[bytes]:
        """``ZRANGE key low high BYSCORE``: members with scores in [low, high]."""
        reply: list[bytes] = await self.execute("ZRANGE", key, low, high, "BYSCORE")
        return reply

    async def hset(self, key: str, mapping: Mapping[str, Arg]) -> int:
        """``HSET key field value ...``."""
        flat = [x for pair in mapping.items() for x in pair]
        return int(await self.execute("HSET", key, *flat))

    async def hsetnx(self, key: str, field: str, value: Arg) -> bool:
        """``HSETNX``; True if it was set."""
        return bool(await self.execute("HSETNX", key, field, value))

    async def xrange(
        self, key: str, start: str = "-", end: str = "+", *, count: int | None = None
    ) -> list[Entry]:
        """``XRANGE``."""
        extra: list[Arg] = [] if count is None else ["COUNT", count]
        return entries(await self.execute("XRANGE", key, start, end, *extra))

    async def xrevrange(
        self, key: str, end: str = "+", start: str = "-", *, count: int | None = None
    ) -> list[Entry]:
        """``XREVRANGE`` (newest first)."""
        extra: list[Arg] = [] if count is None else ["COUNT", count]
        return entries(await self.execute("XREVRANGE", key, end, start, *extra))

    async def xdel(self, key: str, ids: Iterable[str]) -> int:
        """``XDEL``."""
        return int(await self.execute("XDEL", key, *ids))

    async def xread(self, streams: Mapping[str, str], *, count: int, block_ms: int) -> list[Entry]:
        """``XREAD COUNT count BLOCK ms STREAMS ...``, on a connection of its own."""
        args: list[Arg] = ["XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS"]
        args += [*streams.keys(), *streams.values()]
        return stream_entries(await self.execute_blocking(args, block=block_ms / 1000))

    async def xreadgroup(
        self,
        group: str,
        consumer: str,
        streams: Mapping[str, str],
        *,
        count: int,
        block_ms: int | None = None,
    ) -> list[Entry]:
        """``XREADGROUP GROUP g c COUNT n [BLOCK ms] STREAMS ...``; with ``block_ms``
        on a connection of its own."""
        args: list[Arg] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", *streams.keys(), *streams.values()]
        if block_ms is None:
            return stream_entries(await self.execute(*args))
        return stream_entries(await self.execute_blocking(args, block=block_ms / 1000))

    async def xinfo_consumers(self, key: str, group: str) -> list[dict[str, Any]]:
        """``XINFO CONSUMERS``: one ``{name, pending, idle, ...}`` per consumer."""
        reply = await self.execute("XINFO", "CONSUMERS", key, group)
        return [{k.decode(): v for k, v in (field_map(c) or {}).items()} for c in reply]

    async def xpending_count(self, key: str, group: str) -> int:
        """How many entries of ``group`` are pending (``XPENDING key group``)."""
        reply = await self.execute("XPENDING", key, group)
        return int(reply[0])

    async def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as ``{name: value}``."""
        text = (await self.execute("INFO", section)).decode()
        return dict(
            line.split(":", 1) for line in text.splitlines() if ":" in line and line[0] != "#"
        )

    async def blpop(self, keys: Iterable[str], *, timeout: float) -> Any:
        """``BLPOP keys timeout``, on a connection of its own."""
        return await self.execute_blocking(["BLPOP", *keys, timeout], block=timeout)

    async def evalsha(self, sha: str, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        """``EVALSHA sha numkeys keys... args...``."""
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def script_load(self, source: str) -> bytes:
        """``SCRIPT LOAD``; the script's SHA."""
        reply: bytes = await self.execute("SCRIPT", "LOAD", source)
        return reply
