"""``trioqueue run --burst``: drain every queue with a progress bar."""

from __future__ import annotations

import trio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trioqueue._cli._console import err
from trioqueue._config import Config
from trioqueue._keys import PartitionKeys
from trioqueue._worker._supervisor import Supervisor


class BurstProgress:
    """A progress bar of jobs done out of the backlog, fed by a burst supervisor."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("draining"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self._task = self._progress.add_task("jobs", total=None)

    def advance(self, n: int) -> None:
        """Count ``n`` more jobs done (the supervisor's ``on_progress``)."""
        self._progress.advance(self._task, n)

    async def run(self, sup: Supervisor, cfg: Config) -> None:
        """Run ``sup`` (built with ``burst=True`` and ``on_progress=self.advance``)
        until drained, then print one line of totals."""
        progress, task = self._progress, self._task
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
