"""``trioqueue pause`` and ``trioqueue resume``: stop and restart consumption of a queue."""

from __future__ import annotations

import trio

from trioqueue._cli._boundary import CommandError
from trioqueue._cli._console import out
from trioqueue._cli._project import ConfigArg, QueueArg, client_for, load


def pause(config: ConfigArg, queue: QueueArg) -> None:
    """Pause a queue: workers stop fetching its jobs within worker.block seconds and
    let running ones finish. Sends are still accepted; the pause holds across worker
    restarts until `trioqueue resume`."""
    changed = _set(config, queue, paused=True)
    note = "" if changed else " (it was paused already)"
    out.print(f"queue {queue} paused{note}", highlight=False)


def resume(config: ConfigArg, queue: QueueArg) -> None:
    """Resume a paused queue: workers fetch its jobs again at once."""
    changed = _set(config, queue, paused=False)
    note = "" if changed else " (it was not paused)"
    out.print(f"queue {queue} resumed{note}", highlight=False)


def _set(config: ConfigArg, queue: str, *, paused: bool) -> bool:
    cfg, app = load(config)
    known = list(dict.fromkeys([*app.queues, *cfg.queues]))
    if queue not in known:
        raise CommandError(
            f"unknown queue {queue!r}: app {app.name!r} has {', '.join(known) or 'no queues'}"
        )

    async def go() -> bool:
        async with client_for(cfg, app) as client:
            return await (client.pause(queue) if paused else client.resume(queue))

    return trio.run(go)
