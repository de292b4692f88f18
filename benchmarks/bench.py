"""trioqueue against a raw Redis Streams loop, on a private valkey-server.

Measures, for both: bulk send rate, processing rate of one worker process (trioqueue
at concurrency 10 and 100), send-to-handler latency at low load, and server memory
per queued job. See ``benchmarks/README.md``.

    python benchmarks/bench.py [--n 20000] [--reps 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

import trioqueue
from trioqueue._config import parse_config
from trioqueue._connection import Redis, connected
from trioqueue._embedded import find_server_binary

QUEUE = "bench"
GROUP = "bench"
RAW_BATCH = 500
LATENCY_JOBS = 500
LATENCY_WARMUP = 20
LATENCY_GAP = 0.002
LATENCY_CONCURRENCY = 100
CHILD_TIMEOUT = 300.0
# Jobs sent only to warm a consumer up carry this instead of a send time.
WARMUP = -1.0


@attrs.frozen
class Ping:
    sent: float


app = trioqueue.App("bench")


class _Stamps:
    """What a handler records in the worker process."""

    def __init__(self) -> None:
        self.first = math.inf
        self.last = 0.0
        # Worker CPU seconds at the first and the expect-th job: unlike wall time, not
        # inflated by other load on the machine.
        self.cpu_first = 0.0
        self.cpu_last = 0.0
        self.count = 0
        self.latencies: list[float] = []
        self.expect = 0
        self.record_latency = False
        self.on_done: Callable[[], None] | None = None


STAMPS = _Stamps()


@app.handler(queue=QUEUE)
async def handle(msg: Ping) -> None:
    start = time.time()
    if STAMPS.record_latency and msg.sent != WARMUP:
        STAMPS.latencies.append(start - msg.sent)
    STAMPS.count += 1
    if start < STAMPS.first:
        STAMPS.first = start
        STAMPS.cpu_first = time.process_time()
    STAMPS.last = time.time()
    if STAMPS.count == STAMPS.expect:
        STAMPS.cpu_last = time.process_time()
        if STAMPS.on_done is not None:
            STAMPS.on_done()


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    if port == 6379:
        return free_port()
    return port


class Server:
    """A private valkey-server on a loopback port, without persistence."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        args = [
            find_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(data_dir / "valkey.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"valkey-server on port {self.port} did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- worker side


def result_key(tag: str) -> str:
    return f"benchresult:{tag}"


def ready_key(tag: str) -> str:
    return f"benchready:{tag}"


def stamps_result(stamps: _Stamps) -> dict[str, Any]:
    return {
        "first": stamps.first,
        "last": stamps.last,
        "cpu": stamps.cpu_last - stamps.cpu_first,
        "count": stamps.count,
        "latencies": stamps.latencies,
    }


async def child_trioqueue(spec: dict[str, Any]) -> dict[str, Any]:
    config = parse_config(
        {
            "app": "bench:app",
            "broker": {"url": spec["url"], "prefix": spec["prefix"]},
            # A short block only makes a burst worker notice the empty queue sooner;
            # while the queue is non-empty reads return at once either way.
            "worker": {"concurrency": spec["concurrency"], "block": 0.25},
        }
    )
    latency = spec["mode"] == "latency"
    sup = trioqueue.Supervisor(app, config, burst=not latency)
    STAMPS.expect = spec.get("expect", 0)
    STAMPS.record_latency = latency
    STAMPS.on_done = sup.shutdown if latency else None
    async with connected(spec["url"]) as redis, trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await redis.set(ready_key(spec["tag"]), "1")
    return stamps_result(STAMPS)


def noop(fields: Any) -> None:
    """The raw loop's handler: a call per entry, as a handler would cost."""


async def child_raw(spec: dict[str, Any]) -> dict[str, Any]:
    stream = spec["stream"]
    latency = spec["mode"] == "latency"
    stamps = _Stamps()
    async with connected(spec["url"]) as redis:
        await redis.xgroup_create(stream, GROUP, "0", mkstream=True)
        await redis.set(ready_key(spec["tag"]), "1")
        stamps.expect = spec["expect"]
        while not latency or stamps.count < stamps.expect:
            res = await redis.xreadgroup(
                GROUP,
                "c1",
                streams={stream: ">"},
                count=RAW_BATCH,
                block=1000 if latency else 250,
            )
            entries = [e for batch in (res or {}).values() for e in batch]
            if not entries:
                if latency:
                    continue
                break
            ids = []
            for entry in entries:
                start = time.time()
                if latency:
                    sent = float(entry.field_values[b"t"])
                    if sent != WARMUP:
                        stamps.latencies.append(start - sent)
                noop(entry.field_values)
                stamps.count += 1
                if start < stamps.first:
                    stamps.first = start
                    stamps.cpu_first = time.process_time()
                stamps.last = time.time()
                if stamps.count == stamps.expect:
                    stamps.cpu_last = time.process_time()
                ids.append(entry.identifier)
            async with redis.pipeline(transaction=False) as pipe:
                pipe.xack(stream, GROUP, ids)
                pipe.xdel(stream, ids)
    return stamps_result(stamps)


def run_child(raw_spec: str) -> None:
    spec = json.loads(raw_spec)
    body = child_raw if spec["system"] == "raw" else child_trioqueue

    async def main() -> None:
        result = await body(spec)
        async with connected(spec["url"]) as redis:
            await redis.set(result_key(spec["tag"]), json.dumps(result))

    trio.run(main)


# --------------------------------------------------------------------------- driver side


@attrs.define
class Results:
    send: dict[str, list[float]] = attrs.Factory(lambda: {"trioqueue": [], "raw": []})
    memory: dict[str, list[float]] = attrs.Factory(lambda: {"trioqueue": [], "raw": []})
    process: dict[str, list[float]] = attrs.Factory(dict)
    cpu: dict[str, list[float]] = attrs.Factory(dict)
    latency: dict[str, list[float]] = attrs.Factory(lambda: {"trioqueue": [], "raw": []})


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRIOQUEUE_BROKER_URL", None)
    return env


@asynccontextmanager
async def child(spec: dict[str, Any]) -> AsyncIterator[None]:
    """Run a worker process for the body of the block, then wait for it to exit."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    async with trio.open_nursery() as nursery:
        with trio.fail_after(CHILD_TIMEOUT):
            nursery.start_soon(partial(trio.run_process, cmd, env=child_env()))
            yield


async def wait_key(redis: Redis, key: str, timeout: float = 30.0) -> bytes:
    with trio.fail_after(timeout):
        while True:
            value = await redis.get(key)
            if value is not None:
                return value
            await trio.sleep(0.01)


async def used_memory(redis: Redis) -> int:
    info: Any = await redis.info("memory")
    return int(info["used_memory"])


async def fresh(redis: Redis) -> None:
    await redis.flushall()


async def child_result(redis: Redis, tag: str) -> dict[str, Any]:
    return dict(json.loads(await wait_key(redis, result_key(tag), timeout=5.0)))


def record_drain(res: Results, name: str, result: dict[str, Any], n: int) -> None:
    if result["count"] != n:
        raise RuntimeError(f"{name}: worker handled {result['count']} jobs, expected {n}")
    res.process.setdefault(name, []).append(n / (result["last"] - result["first"]))
    res.cpu.setdefault(name, []).append(result["cpu"] / n * 1e6)


async def bulk_trioqueue(redis: Redis, url: str, prefix: str, n: int, res: Results) -> None:
    msgs = [Ping(time.time()) for _ in range(n)]
    async with app.connect(url, prefix=prefix) as client:
        before = await used_memory(redis)
        t0 = time.perf_counter()
        jobs = await client.send_many(msgs)
        elapsed = time.perf_counter() - t0
        after = await used_memory(redis)
    assert len(jobs) == n
    res.send["trioqueue"].append(n / elapsed)
    res.memory["trioqueue"].append((after - before) / n)


async def bulk_raw(redis: Redis, url: str, stream: str, n: int, res: Results) -> None:
    stamps = [str(time.time()) for _ in range(n)]
    async with connected(url) as client:
        before = await used_memory(redis)
        t0 = time.perf_counter()
        for start in range(0, n, RAW_BATCH):
            async with client.pipeline(transaction=False) as pipe:
                for t in stamps[start : start + RAW_BATCH]:
                    pipe.xadd(stream, {"t": t})
        elapsed = time.perf_counter() - t0
        after = await used_memory(redis)
    res.send["raw"].append(n / elapsed)
    res.memory["raw"].append((after - before) / n)


async def drain_trioqueue(redis: Redis, url: str, n: int, concurrency: int, res: Results) -> None:
    await fresh(redis)
    prefix = f"b{secrets.token_hex(4)}"
    await bulk_trioqueue(redis, url, prefix, n, res)
    spec = {
        "system": "trioqueue",
        "mode": "drain",
        "url": url,
        "prefix": prefix,
        "concurrency": concurrency,
        "expect": n,
        "tag": prefix,
    }
    async with child(spec):
        pass
    result = await child_result(redis, prefix)
    record_drain(res, f"trioqueue c={concurrency}", result, n)


async def drain_raw(redis: Redis, url: str, n: int, res: Results) -> None:
    await fresh(redis)
    tag = f"r{secrets.token_hex(4)}"
    stream = f"{tag}:stream"
    await bulk_raw(redis, url, stream, n, res)
    spec = {
        "system": "raw",
        "mode": "drain",
        "url": url,
        "stream": stream,
        "expect": n,
        "tag": tag,
    }
    async with child(spec):
        pass
    result = await child_result(redis, tag)
    record_drain(res, "raw", result, n)


async def latency(redis: Redis, url: str, jobs: int, res: Results) -> None:
    """Both consumers run at once and the sends alternate, so drift in the machine's
    load (other processes, CPU frequency) hits both systems alike."""
    await fresh(redis)
    tag = f"l{secrets.token_hex(4)}"
    stream = f"{tag}:raw"
    expect = LATENCY_WARMUP + jobs
    tq_spec = {
        "system": "trioqueue",
        "mode": "latency",
        "url": url,
        "prefix": tag,
        "concurrency": LATENCY_CONCURRENCY,
        "expect": expect,
        "tag": tag,
    }
    raw_spec = {
        "system": "raw",
        "mode": "latency",
        "url": url,
        "stream": stream,
        "expect": expect,
        "tag": stream,
    }
    async with (
        app.connect(url, prefix=tag) as client,
        connected(url) as raw,
        child(tq_spec),
        child(raw_spec),
    ):
        await wait_key(redis, ready_key(tag))
        await wait_key(redis, ready_key(stream))
        for i in range(expect):
            warm = i < LATENCY_WARMUP
            await client.send(Ping(WARMUP if warm else time.time()))
            await trio.sleep(LATENCY_GAP)
            await raw.xadd(stream, {"t": str(WARMUP if warm else time.time())})
            await trio.sleep(LATENCY_GAP)
    res.latency["trioqueue"] += (await child_result(redis, tag))["latencies"]
    res.latency["raw"] += (await child_result(redis, stream))["latencies"]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@attrs.frozen
class Row:
    figure: str
    unit: str
    trioqueue: float
    raw: float
    ratio: float
    target: str
    met: bool | None


def paired_ratio(tq: Sequence[float], raw: Sequence[float]) -> float:
    """Median over repetitions of trioqueue's figure over raw's figure of the same
    repetition: runs next to each other in time share the machine's load of the
    moment, so this ratio is steadier than the ratio of the two medians."""
    per_rep = len(tq) // len(raw)
    return statistics.median(
        statistics.median(tq[i * per_rep : (i + 1) * per_rep]) / r for i, r in enumerate(raw)
    )


def summarize(res: Results) -> list[Row]:
    med = statistics.median
    send_t, send_r = res.send["trioqueue"], res.send["raw"]
    raw_proc = res.process["raw"]
    p10, p100 = res.process["trioqueue c=10"], res.process["trioqueue c=100"]
    send_ratio = paired_ratio(send_t, send_r)
    p10_ratio, p100_ratio = paired_ratio(p10, raw_proc), paired_ratio(p100, raw_proc)
    lat_t, lat_r = res.latency["trioqueue"], res.latency["raw"]
    p50_t, p50_r = percentile(lat_t, 0.5) * 1000, percentile(lat_r, 0.5) * 1000
    p99_t, p99_r = percentile(lat_t, 0.99) * 1000, percentile(lat_r, 0.99) * 1000
    mem_t, mem_r = med(res.memory["trioqueue"]), med(res.memory["raw"])
    raw_cpu = med(res.cpu["raw"])
    c10, c100 = med(res.cpu["trioqueue c=10"]), med(res.cpu["trioqueue c=100"])
    return [
        Row("bulk send", "jobs/s", med(send_t), med(send_r), send_ratio, ">= 0.70x raw",
            send_ratio >= 0.70),
        Row("processing, concurrency 10", "jobs/s", med(p10), med(raw_proc), p10_ratio, "",
            None),
        Row("processing, concurrency 100", "jobs/s", med(p100), med(raw_proc), p100_ratio,
            ">= 0.25x raw", p100_ratio >= 0.25),
        Row("latency p50", "ms", p50_t, p50_r, p50_t / p50_r, "<= 1.5x raw", p50_t <= 1.5 * p50_r),
        Row("latency p99", "ms", p99_t, p99_r, p99_t / p99_r, "", None),
        Row("memory per queued job", "bytes", mem_t, mem_r, mem_t / mem_r, "<= 120 bytes",
            mem_t <= 120),
        Row("worker CPU per job, c=10", "us", c10, raw_cpu, c10 / raw_cpu, "", None),
        Row("worker CPU per job, c=100", "us", c100, raw_cpu, c100 / raw_cpu, "", None),
    ]  # fmt: skip


def print_table(rows: list[Row], n: int, reps: int) -> None:
    print(f"\nN={n} jobs, {reps} repetition(s); medians, latency from pooled samples")
    print("send and processing ratios: median of per-repetition ratios\n")
    header = f"{'figure':<30}{'unit':>8}{'trioqueue':>12}{'raw':>12}{'ratio':>8}  target"
    print(header)
    print("-" * (len(header) + 14))
    for r in rows:
        mark = "" if r.met is None else (" (met)" if r.met else " (MISSED)")
        print(
            f"{r.figure:<30}{r.unit:>8}{r.trioqueue:>12,.1f}{r.raw:>12,.1f}"
            f"{r.ratio:>8.2f}  {r.target}{mark}"
        )


async def bench(n: int, reps: int, latency_jobs: int) -> Results:
    res = Results()
    with tempfile.TemporaryDirectory(prefix="trioqueue-bench-") as tmp:
        server = Server(Path(tmp))
        try:
            async with connected(server.url) as redis:
                for rep in range(reps):
                    print(f"repetition {rep + 1}/{reps} ...", file=sys.stderr, flush=True)
                    # The raw run sits between the two trioqueue runs it is compared to.
                    await drain_trioqueue(redis, server.url, n, 100, res)
                    await drain_raw(redis, server.url, n, res)
                    await drain_trioqueue(redis, server.url, n, 10, res)
                    await latency(redis, server.url, latency_jobs, res)
        finally:
            server.stop()
    return res


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="jobs per bulk run (20000)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (5)")
    parser.add_argument(
        "--latency-jobs", type=int, default=LATENCY_JOBS, help="jobs per latency run (500)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child)
        return
    started = time.monotonic()
    res = trio.run(bench, args.n, args.reps, args.latency_jobs)
    rows = summarize(res)
    print_table(rows, args.n, args.reps)
    print(f"\n(took {time.monotonic() - started:.0f}s)")
    if args.json:
        doc = {
            "n": args.n,
            "reps": args.reps,
            "latency_jobs": args.latency_jobs,
            "figures": [attrs.asdict(r) for r in rows],
            "samples": {
                "send": res.send,
                "memory": res.memory,
                "process": res.process,
                "worker_cpu_us": res.cpu,
            },
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
