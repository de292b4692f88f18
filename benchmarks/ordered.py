"""Ordered queues against shared queues, in the same run, on a private valkey-server.

Sends N keyed no-op jobs (K keys, P partitions) and drains them with one worker
(in this process, burst mode) at concurrency 100, once on a shared queue and once on
an ordered one, and prints both rates and their ratio. Ordered queues run the jobs of
a key one at a time (the next starts after the previous was acknowledged), so the
ratio shows what that costs when keys are many.

    python benchmarks/ordered.py [--n 20000] [--keys 1000] [--partitions 8]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

import trioqueue
from trioqueue._config_load import parse_config

sys.path.insert(0, str(Path(__file__).parent))
from bench import Server


@attrs.frozen
class Step:
    key: str
    n: int


STAMPS: list[float] = []


def make_app(ordered: bool, partitions: int) -> trioqueue.App:
    app = trioqueue.App("ordered-bench")

    @app.handler(queue="steps", concurrency=100, partitions=partitions, ordered=ordered)
    async def step(msg: Step) -> None:
        STAMPS.append(time.perf_counter())

    return app


async def drain_rate(url: str, ordered: bool, n: int, keys: int, partitions: int) -> float:
    app = make_app(ordered, partitions)
    prefix = f"b{secrets.token_hex(3)}"
    async with app.connect(url, prefix=prefix) as client:
        await client.send_many([Step(f"k{i % keys}", i) for i in range(n)], key=lambda m: m.key)
    cfg = parse_config(
        {
            "app": "bench:app",
            "broker": {"url": url, "prefix": prefix},
            "worker": {"block": 0.05, "heartbeat_interval": 0.5, "heartbeat_ttl": 3.0},
        }
    )
    STAMPS.clear()
    await trioqueue.Supervisor(app, cfg, burst=True).run()
    # First handler start to last handler end, like the main benchmark.
    return n / (max(STAMPS) - min(STAMPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    modes = [
        ("shared, 1 partition", False, 1),
        (f"shared, {args.partitions} partitions", False, args.partitions),
        (f"ordered, {args.partitions} partitions", True, args.partitions),
    ]
    rates: dict[str, list[float]] = {label: [] for label, _, _ in modes}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            for _ in range(args.reps):
                # Interleaved, so machine noise hits every mode alike.
                for label, ordered, partitions in modes:
                    rates[label].append(
                        trio.run(drain_rate, server.url, ordered, args.n, args.keys, partitions)
                    )
        finally:
            server.stop()
    print(f"{args.n} keyed jobs, {args.keys} keys, one worker, concurrency 100")
    base = max(rates[modes[0][0]])
    for label, _, _ in modes:
        best = max(rates[label])
        print(f"{label:24} {best:9,.0f} jobs/s  ({best / base:.2f} x shared, 1 partition)")


if __name__ == "__main__":
    main()
