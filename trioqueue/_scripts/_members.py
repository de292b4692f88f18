"""Typed calls of the scripts that keep a worker's place among its peers: consumer
groups, membership heartbeats, ordered partitions' leases and fenced reads, the server
clock and cron ticks. One builder per script in ``trioqueue/_lua/``, whose header
states the ``KEYS``/``ARGV`` layout built here."""

from __future__ import annotations

from typing import Any

import attrs

from trioqueue._keys import GROUP, PartitionKeys, cron_key, member_key, members_key
from trioqueue._scripts._call import Arg, Call
from trioqueue._scripts._reply import flag, optional_text, pairs, text
from trioqueue._scripts._source import load

ENSURE_GROUP, FORGET_CONSUMER = load("ensure_group"), load("forget_consumer")
HEARTBEAT, MEMBERS_TOUCH = load("heartbeat"), load("members_touch")
LEASE_ACQUIRE, LEASE_RENEW = load("lease_acquire"), load("lease_renew")
LEASE_RELEASE, ORDERED_FETCH = load("lease_release"), load("ordered_fetch")
SERVER_TIME, CRON_CLAIM = load("server_time"), load("cron_claim")


def ensure_group(keys: PartitionKeys) -> Call[bool]:
    """Create the partition's consumer group (and stream) unless it exists; True when
    created. Works on a full server, unlike a plain ``XGROUP CREATE``."""
    return Call(ENSURE_GROUP, [keys.stream], [GROUP], flag)


def forget_consumer(keys: PartitionKeys, *, consumer: str) -> Call[bool]:
    """Delete ``consumer`` from the group unless it has pending entries; True when
    deleted."""
    return Call(FORGET_CONSUMER, [keys.stream], [GROUP, consumer], flag)


def heartbeat(prefix: str, *, member_id: str, info: bytes, ttl_ms: int) -> Call[bool]:
    """Renew the member's heartbeat; False when the previous one had expired (peers may
    have taken its jobs)."""
    return Call(HEARTBEAT, [member_key(prefix, member_id)], [info, ttl_ms], flag)


def members_touch(prefix: str, *, member_id: str, ttl_ms: int, forget_after_ms: int) -> Call[int]:
    """Score the member by when its heartbeat expires, pruning members dead longer
    than ``forget_after_ms``; returns the server's time (epoch ms)."""
    args: list[Arg] = [member_id, ttl_ms, forget_after_ms]
    return Call(MEMBERS_TOUCH, [members_key(prefix)], args, int)


def lease_acquire(keys: PartitionKeys, *, member_id: str, ttl_ms: int) -> Call[str | None]:
    """Take the partition's lease if free: the new token ``<member>:<epoch>``, or None."""
    args: list[Arg] = [member_id, ttl_ms]
    return Call(LEASE_ACQUIRE, [keys.lease, keys.epoch], args, optional_text)


def lease_renew(keys: PartitionKeys, *, token: str, ttl_ms: int) -> Call[bool]:
    """Extend the lease held with ``token``; False when it is lost."""
    return Call(LEASE_RENEW, [keys.lease], [token, ttl_ms], flag)


def lease_release(keys: PartitionKeys, *, token: str) -> Call[bool]:
    """Give up the lease held with ``token``; False when it was not ours any more."""
    return Call(LEASE_RELEASE, [keys.lease], [token], flag)


@attrs.frozen
class Fetched:
    """New ``entries`` (entry id, fields as the client returned them) or, when there
    were none, the ``newest`` entry id to block on (``"0-0"`` for an empty stream)."""

    entries: list[tuple[str, dict[Any, Any]]]
    newest: str


def ordered_fetch(keys: PartitionKeys, *, consumer: str, token: str, count: int) -> Call[Fetched]:
    """Read up to ``count`` new entries while holding the lease ``token``; raises
    ``LeaseLost`` when the lease is another's."""
    args: list[Arg] = [GROUP, consumer, token, count]
    return Call(
        ORDERED_FETCH,
        [keys.stream, keys.lease],
        args,
        _fetched,
        queue=keys.queue,
        errors=frozenset({"FENCED"}),
    )


def _fetched(raw: Any) -> Fetched:
    entries, newest = raw
    return Fetched([(text(e[0]), pairs(e[1])) for e in entries], text(newest))


def server_time() -> Call[int]:
    """The server's clock, in epoch microseconds."""
    return Call(SERVER_TIME, [], [], lambda raw: int(raw[0]) * 1_000_000 + int(raw[1]))


def cron_claim(prefix: str, *, schedule: str, tick_ms: int) -> Call[bool]:
    """Claim tick ``tick_ms`` of ``schedule``; True if this caller won it."""
    return Call(CRON_CLAIM, [cron_key(prefix, schedule)], [tick_ms], flag)
