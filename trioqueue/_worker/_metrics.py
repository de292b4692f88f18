"""Prometheus metrics of one worker: a registry of its own, read when it is scraped.

Nothing is counted twice. The collector reads, at scrape time, what the worker keeps
anyway: the consumers' counters (``_stats``: succeeded, failed, retried, dead,
cancelled, fenced) and running jobs, the partitions it owns, the pause flags, the
outage tracker (``trioqueue_broker_up`` follows it at once) and the figures the
broker refresh loop read last (``_broker_gauges.py``). Only the two histograms are
fed per job: each queue's ``Timings`` is looked up once per runner, and an
observation is a bisect and two additions (no lock: every observation and every
scrape runs in the Trio thread).

The registry is per ``Supervisor``, not prometheus-client's global one, so several
supervisors in one process never clash.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping

import attrs
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from trioqueue._worker._outage import OutageTracker
from trioqueue._worker._stats import SupervisorStatistics

__all__ = [
    "DURATION_BUCKETS",
    "OUTCOMES",
    "WAIT_BUCKETS",
    "BrokerFigures",
    "Histogram",
    "Timings",
    "WorkerMetrics",
    "since_entry",
]

# Seconds. Handler run times: from a millisecond no-op to a five-minute job.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip
# Seconds. Waits: from a job picked up at once to one that waited an hour.
WAIT_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
)  # fmt: skip
# The ``outcome`` label's values, each a field of ConsumerStatistics.
OUTCOMES = ("succeeded", "failed", "retried", "dead", "cancelled", "fenced")


def since_entry(entry_id: str) -> float:
    """Seconds since the entry was added (the time part of its id, server clock),
    by this worker's clock: an immediate send's enqueue time, a delayed job's or a
    retry's promotion into the stream, within a scheduler pass of its due time."""
    return max(0.0, time.time() - int(entry_id.partition("-")[0]) / 1000.0)


class Histogram:
    """Bucket counts and a sum; ``observe`` is the only per-job work."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value (Prometheus buckets are ``le``: upper bounds included)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ``+Inf`` last."""
        out = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@attrs.define(eq=False)
class Timings:
    """One queue's histograms: handler run time and wait before start."""

    duration: Histogram = attrs.Factory(lambda: Histogram(DURATION_BUCKETS))
    wait: Histogram = attrs.Factory(lambda: Histogram(WAIT_BUCKETS))


@attrs.define(eq=False)
class BrokerFigures:
    """What the broker refresh loop read last, per queue."""

    backlog: dict[str, dict[int, int]] = attrs.Factory(dict)
    delayed: dict[str, int] = attrs.Factory(dict)
    dead: dict[str, int] = attrs.Factory(dict)


@attrs.define(eq=False)
class Sources:
    """Where the collector reads the worker's state (set when the worker starts)."""

    statistics: Callable[[], SupervisorStatistics]
    owned: Callable[[], Mapping[str, int]]
    paused: Callable[[], Mapping[str, bool]]
    outage: OutageTracker


class WorkerMetrics:
    """The registry of one supervisor and what fills it.

    ``timed``: feed the histograms (only when the metrics server is on, so a worker
    without one pays nothing per job).
    """

    def __init__(self, *, timed: bool) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.broker = BrokerFigures()
        self._timed = timed
        self._timings: dict[str, Timings] = {}
        self._sources: Sources | None = None
        self.registry.register(self)

    def timings(self, queue: str) -> Timings | None:
        """``queue``'s histograms (one object per queue), or None when not timed."""
        if not self._timed:
            return None
        got = self._timings.get(queue)
        if got is None:
            got = self._timings[queue] = Timings()
        return got

    def attach(self, sources: Sources) -> None:
        """Read the worker's state from ``sources`` from now on."""
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        """Every metric family, as of now (prometheus-client's collector protocol)."""
        src = self._sources
        yield from self._jobs(src)
        yield from self._histograms()
        yield from self._broker_side(src)
        up = GaugeMetricFamily(
            "trioqueue_broker_up",
            "1 while this worker reaches its broker, 0 during an outage.",
            value=0.0 if src is None or src.outage.down else 1.0,
        )
        yield up
        yield CounterMetricFamily(
            "trioqueue_broker_outages",
            "Outages of the broker connection this worker rode out (0 before the first).",
            value=0.0 if src is None else float(src.outage.outages),
        )

    def _jobs(self, src: Sources | None) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "trioqueue_jobs",
            "Jobs settled by this worker, by outcome (failed: attempts that failed).",
            labels=["queue", "outcome"],
        )
        running = GaugeMetricFamily(
            "trioqueue_jobs_running", "Jobs running in this worker now.", labels=["queue"]
        )
        if src is not None:
            for queue, stats in src.statistics().queues.items():
                for outcome in OUTCOMES:
                    jobs.add_metric([queue, outcome], float(getattr(stats, outcome)))
                running.add_metric([queue], float(stats.running))
        yield jobs
        yield running

    def _histograms(self) -> Iterator[Metric]:
        families = (
            ("trioqueue_job_duration_seconds", "Handler run time, failed runs too.", "duration"),
            ("trioqueue_job_wait_seconds", "Time from enqueue (or due time) to start.", "wait"),
        )
        for name, doc, attr in families:
            family = HistogramMetricFamily(name, doc, labels=["queue"])
            for queue, timings in self._timings.items():
                h: Histogram = getattr(timings, attr)
                family.add_metric([queue], buckets=h.buckets(), sum_value=h.total)
            yield family

    def _broker_side(self, src: Sources | None) -> Iterator[Metric]:
        b = self.broker
        backlog = GaugeMetricFamily(
            "trioqueue_queue_backlog",
            "Unsettled jobs in a partition's stream (waiting plus delivered), "
            "as of the last refresh.",
            labels=["queue", "partition"],
        )
        for queue, parts in b.backlog.items():
            for partition, n in sorted(parts.items()):
                backlog.add_metric([queue, str(partition)], float(n))
        yield backlog
        for name, doc, values in (
            ("trioqueue_queue_delayed", "Jobs due later (delays and retries).", b.delayed),
            ("trioqueue_queue_dead", "Dead letters kept for the queue.", b.dead),
        ):
            family = GaugeMetricFamily(name, doc + " As of the last refresh.", labels=["queue"])
            for queue, n in values.items():
                family.add_metric([queue], float(n))
            yield family
        owned = GaugeMetricFamily(
            "trioqueue_partitions_owned",
            "Partitions of an ordered queue this worker owns now.",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "trioqueue_queue_paused", "1 while the queue is paused.", labels=["queue"]
        )
        if src is not None:
            for queue, n in src.owned().items():
                owned.add_metric([queue], float(n))
            for queue, flag in src.paused().items():
                paused.add_metric([queue], 1.0 if flag else 0.0)
        yield owned
        yield paused
