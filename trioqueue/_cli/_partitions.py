"""``trioqueue partitions``: grow a queue's partition count while workers run."""

from __future__ import annotations

from typing import Annotated

import attrs
import trio
import typer

from trioqueue._cli._boundary import CommandError
from trioqueue._cli._console import out
from trioqueue._cli._project import ConfigArg, QueueArg, client_for, load
from trioqueue._keys import PartitionKeys
from trioqueue._status import partition_count
from trioqueue._worker._partitions import store_queue_bounds


def partitions(
    config: ConfigArg,
    queue: QueueArg,
    increase_to: Annotated[
        int, typer.Option("--increase-to", min=1, help="New partition count (only grows).")
    ],
) -> None:
    """Increase a queue's partition count. Workers pick it up while running.

    Keys that now hash to another partition keep their order only for jobs sent
    after the key's earlier jobs were processed (see docs/how-to/partitions.md).
    """
    cfg, app = load(config)

    async def go() -> int:
        async with client_for(cfg, app) as client:
            current = await partition_count(
                client.redis, cfg.broker.prefix, queue, app.queue_settings(queue, cfg).partitions
            )
            if increase_to < current:
                raise CommandError(f"queue {queue!r} has {current} partitions; they can only grow")
            settings = attrs.evolve(app.queue_settings(queue, cfg), partitions=increase_to)
            await store_queue_bounds(client.redis, cfg.broker.prefix, [settings])
            await client.redis.hset(
                PartitionKeys(cfg.broker.prefix, queue).meta, {"partitions": increase_to}
            )
            return current

    before = trio.run(go)
    out.print(f"queue {queue}: {before} → {increase_to} partitions", highlight=False)
