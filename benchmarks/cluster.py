"""Processing on a local Redis Cluster against one server, in the same run.

A queue of 6 partitions, N no-op jobs sent with ``send_many`` (keyed, so every
partition gets its share), then drained by one worker process and, separately, by two
at once (each a burst ``Supervisor``, concurrency 100). The cluster is three
primaries and three replicas from the embedded ``valkey-server`` (``tests/cluster.py``
starts it), all on this machine's cores, so it shows what sharding costs or gains
here, not what separate machines would give. Rates are N divided by the time from the
first handler start to the last handler end across the workers.

    python benchmarks/cluster.py [--n 20000] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench import Server  # noqa: E402

import trioqueue  # noqa: E402
from tests.cluster import Cluster  # noqa: E402
from trioqueue._config_load import parse_config  # noqa: E402
from trioqueue._embedded import find_server_binary  # noqa: E402

QUEUE, PARTITIONS = "spread", 6


@attrs.frozen
class Tick:
    """A no-op job."""

    key: str


app = trioqueue.App("clusterbench")
STAMPS: dict[str, float] = {"first": float("inf"), "last": 0.0, "count": 0.0}


@app.handler(queue=QUEUE, partitions=PARTITIONS)
async def tick(msg: Tick) -> None:
    """Record the first start and the last end."""
    now = time.time()
    STAMPS["first"] = min(STAMPS["first"], now)
    STAMPS["last"] = now
    STAMPS["count"] += 1


def child(url: str, prefix: str) -> None:
    """One worker process: drain the queue, print the stamps as JSON."""
    config = parse_config(
        {
            "app": "cluster:app",
            "broker": {"url": url, "prefix": prefix},
            "worker": {"concurrency": 100, "block": 0.25},
        }
    )
    trio.run(trioqueue.Supervisor(app, config, burst=True).run)
    print(json.dumps(STAMPS))


async def fill(url: str, prefix: str, n: int) -> None:
    """Send ``n`` keyed jobs, spread over the partitions."""
    async with app.connect(url, prefix=prefix) as client:
        for start in range(0, n, 1000):
            await client.send_many(
                [Tick(f"k{i}") for i in range(start, min(n, start + 1000))],
                key=lambda m: m.key,
            )


def drain(url: str, n: int, workers: int) -> float:
    """Jobs per second for ``workers`` processes draining ``n`` jobs."""
    prefix = f"cb{time.monotonic_ns()}"
    trio.run(fill, url, prefix, n)
    here = str(Path(__file__).resolve())
    cmd = [sys.executable, here, "--child", url, prefix]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=str(ROOT / "benchmarks"))
        for _ in range(workers)
    ]
    stamps = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    done = sum(s["count"] for s in stamps)
    if done != n:
        raise RuntimeError(f"drained {done} of {n}")
    first = min(s["first"] for s in stamps)
    last = max(s["last"] for s in stamps)
    return n / (last - first)


def main(argv: list[str] | None = None) -> None:
    """Command line: start a server and a cluster, drain on each, print the rates."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    rates: dict[str, list[float]] = {"single, 1 worker": [], "cluster, 1": [], "cluster, 2": []}
    with tempfile.TemporaryDirectory(prefix="trioqueue-cluster-") as tmp:
        server = Server(Path(tmp))
        cluster = Cluster(find_server_binary(), Path(tmp))
        try:
            cluster.start()
            for rep in range(args.reps):
                print(f"repetition {rep + 1}/{args.reps} ...", file=sys.stderr, flush=True)
                rates["single, 1 worker"].append(drain(server.url, args.n, 1))
                rates["cluster, 1"].append(drain(cluster.url, args.n, 1))
                rates["cluster, 2"].append(drain(cluster.url, args.n, 2))
        finally:
            cluster.stop()
            server.stop()
    base = rates["single, 1 worker"]
    print(f"\n{args.n} no-op jobs, queue of {PARTITIONS} partitions, concurrency 100 per worker")
    print(f"{'':<28}{'jobs/s':>10}{'x single':>10}")
    for name, got in rates.items():
        ratio = statistics.median(g / b for g, b in zip(got, base, strict=True))
        print(f"{name:<28}{statistics.median(got):>10,.0f}{ratio:>10.2f}")


if __name__ == "__main__":
    main()
