"""``trioqueue run --burst``: drain every queue with a progress bar."""

from __future__ import annotations

import trio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trioqueue._app import App
from trioqueue._cli._console import err
from trioqueue._config import Config
from trioqueue._keys import PartitionKeys
from trioqueue._worker._supervisor import Supervisor


async def run_burst(app: App, cfg: Config, queues: list[str] | None) -> None:
    """Run a burst supervisor over ``queues`` (default: all), showing jobs done of the
    backlog, then one line of totals."""
    progress = Progress(
        TextColumn("draining"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task("jobs", total=None)
    sup = Supervisor(
        app, cfg, queues=queues, burst=True, handle_signals=True,
        on_progress=lambda n: progress.advance(task, n),
    )  # fmt: skip
    with progress:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            backlog = 0
            for name, settings in sup.settings.items():
                for partition in range(settings.partitions):
                    keys = PartitionKeys(cfg.broker.prefix, name, partition)
                    backlog += await sup.redis.xlen(keys.stream)
                    backlog += await sup.redis.zcard(keys.delayed)
            done = progress.tasks[0].completed
            progress.update(task, total=max(backlog + int(done), int(done)))
        # The backlog was counted while jobs were already finishing: show the truth.
        progress.update(task, total=progress.tasks[0].completed)
    stats = sup.statistics().queues.values()
    err.print(
        f"drained: {sum(s.succeeded for s in stats)} succeeded, "
        f"{sum(s.retried for s in stats)} retried, {sum(s.dead for s in stats)} dead-lettered"
    )
