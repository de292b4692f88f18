"""Processing rate of `trioqueue run --workers N` against one process, in the same run.

For each mode (`run` alone, `run --workers 1`, `run --workers 2`, ...) and repetition,
on a private valkey-server: pause the queue, send N no-op jobs, start the workers and
wait until every one is attached, then resume the queue and time until the streams
are empty (every job acknowledged and deleted). Process start-up is not in the
figure. Also reports the CPU time the server and the worker processes used during
the drain, as a share of one core (from /proc), to show what bounds the rate.

    python benchmarks/workers.py [--n 20000] [--workers 1,2] [--partitions 4] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

import trioqueue
from trioqueue._keys import PartitionKeys

sys.path.insert(0, str(Path(__file__).parent))
from bench import Server

TASKS = """
import attrs
import trioqueue

app = trioqueue.App("bench-workers")


@attrs.frozen
class Nop:
    n: int


@app.handler(queue="nop", concurrency=100)
async def nop(msg: Nop) -> None:
    pass
"""
TRIOQUEUE = [sys.executable, "-m", "trioqueue"]


@attrs.frozen
class Nop:
    n: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its reaped children so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:13])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


async def one_run(
    server: Server, root: Path, n: int, workers: int, partitions: int
) -> dict[str, float]:
    prefix = f"b{secrets.token_hex(4)}"
    project = root / prefix
    project.mkdir()
    (project / "tasks.py").write_text(TASKS)
    (project / "config.toml").write_text(
        f'app = "tasks:app"\n[broker]\nurl = "{server.url}"\nprefix = "{prefix}"\n'
        f"[worker]\nblock = 0.1\n[queues.nop]\npartitions = {partitions}\n"
    )
    app = trioqueue.App("bench-sender")

    @app.handler(queue="nop")
    async def nop(msg: Nop) -> None:
        pass

    async with app.connect(server.url, prefix=prefix) as client:
        await client.pause("nop")
        for start in range(0, n, 1000):
            await client.send_many([Nop(i) for i in range(start, min(n, start + 1000))])
        args = [*TRIOQUEUE, "run", "config.toml"]
        if workers:
            args += ["--workers", str(workers)]
        log = project / "run.log"
        with log.open("wb") as err:
            # Started and waited for like the server: a benchmark, not the product.
            proc = subprocess.Popen(  # noqa: ASYNC220
                args, cwd=project, stderr=err, stdout=subprocess.DEVNULL
            )
        try:
            expected = max(1, workers)
            while log.read_text().count(" started: app bench-workers") < expected:
                await trio.sleep(0.05)
            pids = [proc.pid]
            pids += [int(p) for p in re.findall(r"starting: pid (\d+)", log.read_text())]
            streams = [PartitionKeys(prefix, "nop", p).stream for p in range(partitions)]
            cpu0 = [cpu_seconds(pid) for pid in [server.proc.pid, *pids]]
            t0 = time.perf_counter()
            await client.resume("nop")
            while True:
                left = 0
                for stream in streams:
                    left += int(await client.redis.xlen(stream))
                if not left:
                    break
                await trio.sleep(0.005)
            wall = time.perf_counter() - t0
            cpu1 = [cpu_seconds(pid) for pid in [server.proc.pid, *pids]]
        finally:
            proc.send_signal(signal.SIGTERM)
            await trio.to_thread.run_sync(proc.wait)
    used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return {
        "rate": n / wall,
        "server_cpu": used[0] / wall,
        # The children only (a parent just waits); `run` alone is its own worker.
        "worker_cpu": sum(used[2:] if workers else used[1:]) / wall,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated; 0 = `run` alone")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    ns = parser.parse_args()
    modes = [0, *[int(w) for w in ns.workers.split(",")]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "valkey").mkdir()
        server = Server(root / "valkey")
        try:
            results: dict[int, list[dict[str, float]]] = {m: [] for m in modes}
            for _ in range(ns.reps):
                for mode in modes:  # interleaved, so drift hits every mode alike
                    results[mode].append(await one_run(server, root, ns.n, mode, ns.partitions))
        finally:
            server.stop()
    print(f"{ns.n} no-op jobs, {ns.partitions} partitions, concurrency 100, {os.cpu_count()} cores")
    base = max(r["rate"] for r in results[0])
    for mode, runs in results.items():
        best = max(runs, key=lambda r: r["rate"])
        each = ", ".join(f"{r['rate']:,.0f}" for r in runs)
        name = "run (one process)" if mode == 0 else f"run --workers {mode}"
        print(
            f"{name:22} {best['rate']:9,.0f} jobs/s  x{best['rate'] / base:.2f}  "
            f"(runs: {each}; "
            f"server CPU {best['server_cpu']:.0%}, workers CPU {best['worker_cpu']:.0%} of a core)"
        )


if __name__ == "__main__":
    trio.run(main)
