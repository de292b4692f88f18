"""Counters of consumers and the public statistics records built from them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import attrs

__all__ = ["ConsumerStatistics", "ConsumerStats", "SupervisorStatistics", "report_fenced"]

log = logging.getLogger("trioqueue.worker.consumer")


@attrs.define
class ConsumerStats:
    """Counters one consumer keeps while it runs."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    fenced: int = 0
    reclaimed: int = 0
    lost_by_trim: int = 0


@attrs.frozen
class ConsumerStatistics:
    """What one consumer (or every consumer of one queue, summed) has done so far.

    Attributes:
        succeeded: jobs acknowledged as done.
        failed: attempts whose handler raised (or timed out); each is then retried
            or dead-lettered.
        retried: retries scheduled (or run in place, on ordered queues).
        dead: jobs moved to the dead-letter stream.
        cancelled: running jobs cancelled on request and settled as cancelled.
        fenced: settlements refused because another member owns the entry now.
        reclaimed: entries taken over from dead or stalled members.
        lost_by_trim: pending entries found deleted from the stream by someone else.
        running: jobs running right now.
        max_running: the most jobs that ran at once.
    """

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    fenced: int = 0
    reclaimed: int = 0
    lost_by_trim: int = 0
    running: int = 0
    max_running: int = 0

    @classmethod
    def of(cls, stats: ConsumerStats, *, running: int, max_running: int) -> ConsumerStatistics:
        """A snapshot of ``stats`` plus the running counts."""
        return cls(**attrs.asdict(stats), running=running, max_running=max_running)

    @classmethod
    def total(cls, parts: Iterable[ConsumerStatistics]) -> ConsumerStatistics:
        """Counters summed; ``max_running`` is the largest of the parts'."""
        out = cls()
        for p in parts:
            out = cls(
                **{
                    f.name: getattr(out, f.name) + getattr(p, f.name)
                    for f in attrs.fields(cls)
                    if f.name != "max_running"
                },
                max_running=max(out.max_running, p.max_running),
            )
        return out


@attrs.frozen
class SupervisorStatistics:
    """A snapshot of a running ``Supervisor`` (``Supervisor.statistics()``).

    Attributes:
        member_id: this worker's name in consumer groups and heartbeats.
        queues: per queue, its consumers' counters summed (ordered queues include
            the partitions this worker owned earlier and gave up).
        consumers: per consumer of a shared queue, ``queue`` for partition 0 and
            ``queue:N`` for partition N.
        heartbeat_lapses: how often this worker found its heartbeat had expired.
        lost_entries: stream entries the broker lost after acknowledging them (a
            failover to a lagging replica, a restart without persistence), as this
            worker noticed them.
    """

    member_id: str
    queues: Mapping[str, ConsumerStatistics]
    consumers: Mapping[str, ConsumerStatistics]
    heartbeat_lapses: int
    lost_entries: int = 0


def report_fenced(stats: ConsumerStats, queue: str, entry_id: str, what: str) -> None:
    """Count and log a settlement refused because another member owns the entry."""
    stats.fenced += 1
    log.warning(
        "queue %s: %s of entry %s refused: another member owns it now "
        "(this worker was paused or cut off past its lease)",
        queue,
        what,
        entry_id,
    )
