"""One ``/metrics`` and ``/healthz`` for all the worker processes of a parent.

With ``[metrics] port`` (or ``--metrics-port``) and ``--workers N``, the parent
listens on that port and each child serves its own registry on a free loopback port
(``run --metrics-port 0``), which it reports over its link. When the parent is
scraped it scrapes every child at once (``SCRAPE_TIMEOUT`` each) and answers with
one set of series, without a ``worker`` label, as if one process had done it all:

- counters, histograms and per-process gauges (jobs running, partitions owned,
  outages) are summed over the children;
- the broker-side gauges every child reads from the same broker (backlog, delayed,
  dead, paused) are the same figure seen N times: the largest is kept;
- ``trioqueue_broker_up`` is the smallest (0 if any child is cut off);
- two series of the parent's own: ``trioqueue_worker_processes`` (children
  running) and ``trioqueue_worker_restarts_total``.

A child that does not answer in time is left out of that scrape (its counters dip
until the next one) and named in ``/healthz``, which is ``200 ok`` only when every
slot has a started child whose own ``/healthz`` says ok.

This is simpler than prometheus-client's multi-process mode (files in a shared
directory, a registry rebuilt from them on every scrape) and needs nothing from the
children beyond what ``run`` already serves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from trioqueue._parent._parent import Parent

__all__ = ["SCRAPE_TIMEOUT", "ParentMetrics", "merge"]

SCRAPE_TIMEOUT = 2.0
_SAME_BROKER = ("trioqueue_queue_backlog", "trioqueue_queue_delayed", "trioqueue_queue_dead",
                "trioqueue_queue_paused")  # fmt: skip
_COMBINE: dict[str, Callable[[float, float], float]] = {
    **{name: max for name in _SAME_BROKER},
    "trioqueue_broker_up": min,
}


def _add(a: float, b: float) -> float:
    return a + b


def merge(texts: list[str]) -> list[Metric]:
    """The families of several Prometheus text expositions, combined sample by sample
    (same name, same labels) as the module docstring says."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            combine = _COMBINE.get(family.name, _add)
            seen = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = seen.get(key)
                seen[key] = sample.value if old is None else combine(old, sample.value)
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class ParentMetrics:
    """The parent's registry: its children's figures as of the last ``refresh``."""

    def __init__(self, parent: Parent, *, host: str) -> None:
        self._parent = parent
        # A child listening on every address is scraped over loopback.
        self._host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self._texts: list[str] = []
        self._unhealthy: list[str] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    async def refresh(self, path: str) -> None:
        """Scrape every started child's ``path`` (``/metrics`` or ``/healthz``)."""
        if path not in ("/metrics", "/healthz"):
            return
        targets = {
            c.index: c.metrics_port
            for c in self._parent.children.values()
            if c.metrics_port is not None
        }
        answers: dict[int, tuple[int, str] | None] = {}

        async def scrape(index: int, port: int) -> None:
            answers[index] = None
            with trio.move_on_after(SCRAPE_TIMEOUT):
                # Gone, or not an HTTP answer: reported as not answering.
                with contextlib.suppress(OSError, ValueError, IndexError):
                    answers[index] = await _get(self._host, port, path)

        async with trio.open_nursery() as nursery:
            for index, port in targets.items():
                nursery.start_soon(scrape, index, port)
        if path == "/metrics":
            self._texts = [a[1] for a in answers.values() if a is not None and a[0] == 200]
            return
        reasons = []
        for index in range(self._parent.workers):
            answer = answers.get(index)
            if index not in targets:
                reasons.append(f"worker {index}: not running or not started yet")
            elif answer is None:
                reasons.append(f"worker {index}: /healthz did not answer")
            elif answer[0] != 200:
                reasons.append(f"worker {index}: {answer[1].strip()}")
        self._unhealthy = reasons

    def health(self) -> str | None:
        """Why some worker is not healthy (one line), as of the last refresh; or None."""
        return "; ".join(self._unhealthy) or None

    def collect(self) -> Iterator[Metric]:
        """The merged families of the children, then the parent's own."""
        yield from merge(self._texts)
        yield GaugeMetricFamily(
            "trioqueue_worker_processes",
            "Worker processes of this parent running now.",
            value=float(len(self._parent.children)),
        )
        yield CounterMetricFamily(
            "trioqueue_worker_restarts",
            "Worker processes of this parent that died and were restarted.",
            value=float(self._parent.restarts.total),
        )


async def _get(host: str, port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from a child's metrics server: status and body."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode("latin-1"))
        chunks = []
        while chunk := await stream.receive_some(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body.decode("utf-8", "replace")
