"""One script call as a value, and the two drivers that run it.

A builder (``_jobs.py``, ``_members.py``) turns named arguments into a ``Call``: the
script, its ``KEYS`` and ``ARGV``, and how to read the reply. A driver runs it on a
connection: ``run`` on trioqueue's own client (the Trio client and the workers), and
``run_sync`` in ``trioqueue/_sync_redis.py`` on redis-py (``SyncClient``, the only part
that imports redis-py). Both run the script by SHA and load it only when the
server does not know it yet (``NOSCRIPT``, e.g. after a restart: nothing ran, so
running it then is safe), and both turn the error codes the call declares into
exceptions (``_codes.py``). Other errors propagate as the client library raised them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs

from trioqueue._redis import AnyRedis, ReplyError
from trioqueue._scripts._codes import reply_error
from trioqueue._scripts._source import Script

R = TypeVar("R")
Arg = str | bytes | int | float


@attrs.frozen
class Call(Generic[R]):
    """``script`` with its ``keys`` and ``args``; ``parse`` reads its raw reply.

    ``queue`` names the queue in error messages; ``errors`` lists the reply codes
    that become exceptions (see ``_codes.py``). The sequences are not copied: a
    builder hands over lists it made for this call alone.
    """

    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    parse: Callable[[Any], R]
    queue: str = ""
    errors: frozenset[str] = frozenset()


async def run(redis: AnyRedis, call: Call[R]) -> R:
    """Run ``call`` on trioqueue's client and return its parsed reply."""
    sha, keys, args = call.script.sha, call.keys, call.args
    try:
        try:
            raw = await redis.evalsha(sha, keys=keys, args=args)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
            await redis.script_load(call.script.source)
            raw = await redis.evalsha(sha, keys=keys, args=args)
    except ReplyError as exc:
        raise_translated(call, exc)
        raise
    return call.parse(raw)


async def run_then(
    redis: AnyRedis, call: Call[R], then: Sequence[Arg], *, block: float
) -> tuple[R, Any]:
    """Run ``call`` and then the command ``then`` on one connection of their own (a
    ``WAIT`` counts the writes of its connection), which ``then`` may block for
    ``block`` seconds; return the call's parsed reply and ``then``'s raw one."""
    sha, keys, args = call.script.sha, call.keys, call.args
    commands = [("EVALSHA", sha, len(keys), *keys, *args), then]
    raw, after = await redis.pipeline_blocking(commands, block=block)
    if isinstance(raw, ReplyError) and raw.code == "NOSCRIPT":
        await redis.script_load(call.script.source)
        raw, after = await redis.pipeline_blocking(commands, block=block)
    if isinstance(raw, ReplyError):
        raise_translated(call, raw)
        raise raw
    if isinstance(after, ReplyError):
        raise after
    return call.parse(raw), after


def raise_translated(call: Call[Any], exc: Exception) -> None:
    if not call.errors:
        return
    translated = reply_error(str(exc), queue=call.queue, accepted=call.errors)
    if translated is not None:
        # The reply stays attached: it names the script's own words.
        raise translated from exc
