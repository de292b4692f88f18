"""What the operational signals cost: bulk send and processing rates of one worker with
no signal, then with each signal on (the per-minute history, the default; the job
event stream; the Prometheus endpoint, whose histograms are fed per job; OpenTelemetry
tracing with the SDK; a progress report in every job), in one run on a private
valkey-server.

Tracing installs the SDK's tracer provider for its variant only, with a batch span
processor and an exporter that drops the spans: what is measured is making the spans
and handing them on, not shipping them.

Each repetition runs every variant once, in turn (starting with a different one each
time), on a fresh key prefix: ``send_many``
of ``--n`` no-op jobs (timed), then a burst worker at concurrency 100 in this process,
timed from its first handler call to its last, with the CPU time the worker process and
the server spent on it (steadier than rates on a busy machine). Figures are medians over
repetitions, with their ratio to the first variant.

    python benchmarks/signals.py [--n 20000] [--reps 3]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.test.globals_test import reset_trace_globals

import trioqueue
from trioqueue._config_load import parse_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Server

QUEUE = "signals"
NONE = {"history_hours": 0, "events": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "no signals": NONE,
    "history (default)": {"history_hours": 24, "events": False},
    "history + events": {"history_hours": 24, "events": True},
    "metrics endpoint": {**NONE, "metrics": True},
    "tracing (SDK)": {**NONE, "tracing": True},
    "progress per job": {**NONE, "progress": True},
    "defaults": {},
}
PROGRESS = False  # whether the handler reports progress (the "progress" variant)


@attrs.frozen
class Noop:
    n: int


class Stamps:
    """First and last handler call, and how many ran."""

    def __init__(self) -> None:
        self.first = self.last = 0.0
        self.count = 0

    def record(self) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.last = now
        self.count += 1


STAMPS = Stamps()
app = trioqueue.App("signals")


@app.handler(queue=QUEUE)
async def handle(msg: Noop) -> None:
    STAMPS.record()
    if PROGRESS:
        await trioqueue.report_progress(1.0)


class DropSpans(SpanExporter):
    """Takes spans and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@contextlib.contextmanager
def tracing(on: bool) -> Iterator[None]:
    """A global SDK tracer provider while the variant runs, if ``on``."""
    if not on:
        yield
        return
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        provider.shutdown()
        reset_trace_globals()


async def server_cpu(client: trioqueue.Client) -> float:
    """The server's CPU seconds so far (user + system)."""
    info = await client.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one(url: str, n: int, variant: dict[str, Any]) -> tuple[float, float, float, float]:
    """(send rate, processing rate, worker CPU µs per job, server CPU µs per job) of one
    drain of ``n`` jobs."""
    global PROGRESS
    prefix = f"sig{secrets.token_hex(3)}"
    data: dict[str, Any] = {
        "app": "signals:app",
        "broker": {"url": url, "prefix": prefix},
        "worker": {"concurrency": 100, "block": 0.25},
    }
    if "history_hours" in variant:
        data["metrics"] = {"history_hours": variant["history_hours"]}
    if variant.get("metrics"):
        data["metrics"] = {**data.get("metrics", {}), "port": 0}
    if "events" in variant:
        data["queues"] = {QUEUE: {"events": variant["events"]}}
    config = parse_config(data)
    PROGRESS = bool(variant.get("progress"))
    with tracing(bool(variant.get("tracing"))):
        return await _drain(url, prefix, n, config)


async def _drain(
    url: str, prefix: str, n: int, config: trioqueue.Config
) -> tuple[float, float, float, float]:
    global STAMPS
    # The worker writes the queue's events setting into the broker before any send.
    async with trio.open_nursery() as nursery:
        sup = trioqueue.Supervisor(app, config, burst=True)
        await nursery.start(sup.run)
    async with app.connect(url, prefix=prefix, config=config) as client:
        msgs = [Noop(i) for i in range(n)]
        start = time.perf_counter()
        await client.send_many(msgs)
        sent = n / (time.perf_counter() - start)
        STAMPS = Stamps()
        cpu, server = time.process_time(), await server_cpu(client)
        async with trio.open_nursery() as nursery:
            await nursery.start(trioqueue.Supervisor(app, config, burst=True).run)
        cpu, server = time.process_time() - cpu, await server_cpu(client) - server
    assert STAMPS.count == n, (STAMPS.count, n)
    return sent, (n - 1) / (STAMPS.last - STAMPS.first), cpu / n * 1e6, server / n * 1e6


async def main(n: int, reps: int, names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            got: dict[str, list[tuple[float, float, float, float]]] = {n_: [] for n_ in names}
            await one(server.url, min(n, 2000), VARIANTS[names[0]])  # warm-up
            for rep in range(reps):
                # A different order each time: drift on a shared box favours no variant.
                for name in names[rep % len(names) :] + names[: rep % len(names)]:
                    got[name].append(await one(server.url, n, VARIANTS[name]))
        finally:
            server.stop()

    def median(name: str, i: int) -> float:
        return statistics.median(run[i] for run in got[name])

    base = [median(names[0], i) for i in range(4)]
    print(f"{n} no-op jobs, {reps} repetitions, medians (ratio to {names[0]})")
    print(
        f"{'variant':20} {'bulk send/s':>18} {'processed/s':>18} {'worker µs/job':>16} "
        f"{'server µs/job':>16}"
    )
    for name in names:
        cells = []
        for i, fmt in enumerate(("{:>10,.0f}", "{:>10,.0f}", "{:>8.1f}", "{:>8.1f}")):
            value = median(name, i)
            cells.append(f"{fmt.format(value)} ({value / base[i]:.2f})")
        print(f"{name:20} " + " ".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="jobs per drain (20000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument(
        "--variants",
        default=",".join(name for name in VARIANTS if name != "defaults"),
        help="comma-separated, the first is the base (default: all; 'defaults' sets no key, "
        "to compare with a version of trioqueue without these settings)",
    )
    args = parser.parse_args()
    sys.modules.setdefault("signals", sys.modules[__name__])
    trio.run(main, args.n, args.reps, args.variants.split(","))
