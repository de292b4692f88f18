"""Redis Cluster key slots, and which argument of a command is its key.

A key's slot is CRC16 (XMODEM) of the key, or of its hash tag (the part between the
first ``{`` and the next ``}``, if not empty), modulo 16384. ``command_key`` finds the
key a command is routed by; commands without one (``PING``, ``INFO``, ``SCRIPT``, a
script called with no keys) may go to any primary.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

from trioqueue._redis._connection import Arg

__all__ = ["SLOTS", "command_key", "key_slot"]

SLOTS = 16384

# Commands whose first argument is the key (the rest have no key, or are below).
_FIRST_ARG = frozenset(
    {
        "GET", "SET", "DEL", "EXISTS", "INCR", "INCRBY", "EXPIRE", "PEXPIRE", "PTTL",
        "TTL", "TYPE", "HGET", "HSET", "HSETNX", "HGETALL", "HDEL", "HINCRBY", "HMGET",
        "XLEN", "XADD", "XRANGE", "XREVRANGE", "XDEL", "XACK", "XPENDING", "XCLAIM",
        "XAUTOCLAIM", "XTRIM", "ZADD", "ZCARD", "ZRANGE", "ZREM", "ZRANGEBYSCORE",
        "ZSCORE", "LPUSH", "RPUSH", "LRANGE", "BLPOP", "MGET", "WATCH", "DUMP",
        "RESTORE",
    }
)  # fmt: skip


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % SLOTS


def _name(arg: Arg) -> str:
    return arg.decode().upper() if isinstance(arg, bytes) else str(arg).upper()


def command_key(args: Sequence[Arg]) -> Arg | None:
    """The key ``args`` is routed by, or None for a command that has none."""
    name = _name(args[0])
    if name in _FIRST_ARG:
        return args[1] if len(args) > 1 else None
    if name in ("EVALSHA", "EVAL", "FCALL"):
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    if name in ("XREAD", "XREADGROUP"):
        upper = [_name(a) if isinstance(a, str | bytes) else "" for a in args]
        return args[upper.index("STREAMS") + 1] if "STREAMS" in upper else None
    if name in ("XINFO", "XGROUP", "OBJECT", "MEMORY"):
        return args[2] if len(args) > 2 else None
    return None
