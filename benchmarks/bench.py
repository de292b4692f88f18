"""trioqueue against the floor (a raw Trio + hiredis loop), on a private valkey-server.

Measures bulk, single, concurrent and synchronous send rates, the processing rate of
one worker process (trioqueue at concurrency 10 and 100), send-to-handler latency at
low load, server memory per queued job and per job left after a run. Every figure is
reported as a ratio to the floor measured in the same run, next to the ratio of a raw
coredis loop doing the floor's commands (what the client library alone costs). See
``benchmarks/README.md``.

    python benchmarks/bench.py [--n 20000] [--reps 3] [--json results.json]
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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import coredis
import redis as redis_py
import trio
from coredis.retry import NoRetryPolicy

import trioqueue
from trioqueue._config_load import parse_config
from trioqueue._embedded import find_server_binary

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resp import RespClient, open_resp

QUEUE = "bench"
GROUP = "bench"
RAW_BATCH = 500
SEND_CONCURRENCY = 32
SENDS = 1000
LATENCY_JOBS = 500
LATENCY_WARMUP = 20
LATENCY_GAP = 0.002
LATENCY_CONCURRENCY = 100
# Calls made before a send rate is timed: connecting, loading scripts, first-call caches.
SEND_WARMUP = 20
CHILD_TIMEOUT = 300.0
# Jobs sent only to warm a consumer up carry this instead of a send time.
WARMUP = -1.0

FLOOR, COREDIS, TRIOQUEUE = "floor", "coredis", "trioqueue"
# The synchronous row compares SyncClient with redis-py's own XADD.
REDIS_PY, SYNC_CLIENT = "redis-py", "SyncClient"


@attrs.frozen
class Ping:
    """The benchmark's no-op job: only its send time (``time.time()``)."""

    sent: float


app = trioqueue.App("bench")


class _Stamps:
    """What a consumer records in the worker process."""

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

    def record(self, start: float, sent: float) -> None:
        """One job started at ``start`` (``time.time()``); it was sent at ``sent``."""
        if self.record_latency and sent != WARMUP:
            self.latencies.append(start - sent)
        self.count += 1
        if start < self.first:
            self.first = start
            self.cpu_first = time.process_time()
        self.last = time.time()
        if self.count == self.expect:
            self.cpu_last = time.process_time()
            if self.on_done is not None:
                self.on_done()

    def result(self) -> dict[str, Any]:
        """The stamps as JSON data, for the driver."""
        return {
            "first": self.first,
            "last": self.last,
            "cpu": self.cpu_last - self.cpu_first,
            "count": self.count,
            "latencies": self.latencies,
        }


STAMPS = _Stamps()


@app.handler(queue=QUEUE)
async def handle(msg: Ping) -> None:
    """The trioqueue handler: records its start and the message's send time."""
    STAMPS.record(time.time(), msg.sent)


# --------------------------------------------------------------------------- server


def free_port() -> int:
    """A free loopback port, never 6379 (a developer's own server may want it)."""
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
        """The server's ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (it is ours: started by this object)."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- worker side


def result_key(tag: str) -> str:
    """Where a worker process leaves its stamps for the driver."""
    return f"benchresult:{tag}"


def ready_key(tag: str) -> str:
    """Set by a worker process once it consumes (the latency run waits for it)."""
    return f"benchready:{tag}"


@asynccontextmanager
async def coredis_client(url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    """coredis as trioqueue 0.1 used it: bytes replies, no retry policy."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(
        url, decode_responses=False, retry_policy=NoRetryPolicy()
    )
    async with client:
        yield client


async def child_trioqueue(spec: dict[str, Any]) -> dict[str, Any]:
    """One trioqueue worker (a burst ``Supervisor``) with default queue settings."""
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
    async with open_resp(spec["url"]) as resp, trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await resp.execute("SET", ready_key(spec["tag"]), "1")
    return STAMPS.result()


def noop(fields: Any) -> None:
    """The raw loops' handler: a call per entry, as a handler would cost."""


async def child_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor consumer: ``XREADGROUP COUNT 500``, a no-op per entry, one ``XACK``."""
    stream = spec["stream"]
    latency = spec["mode"] == "latency"
    stamps = _Stamps()
    stamps.record_latency = latency
    async with open_resp(spec["url"]) as r:
        await r.execute("XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM")
        await r.execute("SET", ready_key(spec["tag"]), "1")
        stamps.expect = spec["expect"]
        block = 1000 if latency else 250
        while not latency or stamps.count < stamps.expect:
            reply = await r.execute(
                "XREADGROUP", "GROUP", GROUP, "c1", "COUNT", RAW_BATCH, "BLOCK", block,
                "STREAMS", stream, ">",
            )  # fmt: skip
            if not reply:
                if latency:
                    continue
                break
            ids = []
            # RESP2: [[stream, [[id, [field, value, ...]], ...]]]
            for entry_id, fields in reply[0][1]:
                start = time.time()
                noop(fields)
                stamps.record(start, float(fields[1]) if latency else 0.0)
                ids.append(entry_id)
            await r.execute("XACK", stream, GROUP, *ids)
    return stamps.result()


async def child_coredis(spec: dict[str, Any]) -> dict[str, Any]:
    """The floor's commands through coredis: what the client library alone costs."""
    stream = spec["stream"]
    latency = spec["mode"] == "latency"
    stamps = _Stamps()
    stamps.record_latency = latency
    async with coredis_client(spec["url"]) as redis:
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
                noop(entry.field_values)
                stamps.record(start, float(entry.field_values[b"t"]) if latency else 0.0)
                ids.append(entry.identifier)
            await redis.xack(stream, GROUP, ids)
    return stamps.result()


CHILDREN = {FLOOR: child_floor, COREDIS: child_coredis, TRIOQUEUE: child_trioqueue}


def run_child(raw_spec: str) -> None:
    """Run one worker process described by ``raw_spec`` (JSON) and store its stamps."""
    spec = json.loads(raw_spec)
    body = CHILDREN[spec["system"]]

    async def main() -> None:
        result = await body(spec)
        async with open_resp(spec["url"]) as r:
            await r.execute("SET", result_key(spec["tag"]), json.dumps(result))

    trio.run(main)


# --------------------------------------------------------------------------- driver side


@attrs.define
class Results:
    """Samples by figure and system: ``rates[figure][system]`` holds one list per
    repetition (a figure measured twice in a repetition has two values there)."""

    rates: dict[str, dict[str, list[list[float]]]] = attrs.Factory(dict)
    latency: dict[str, list[float]] = attrs.Factory(dict)
    rep: int = 0

    def add(self, figure: str, system: str, value: float) -> None:
        """Record one value of ``figure`` for ``system`` in the current repetition."""
        reps = self.rates.setdefault(figure, {}).setdefault(system, [])
        while len(reps) <= self.rep:
            reps.append([])
        reps[self.rep].append(value)

    def per_rep(self, figure: str, system: str) -> list[float]:
        """The median of each repetition's values."""
        return [statistics.median(v) for v in self.rates[figure][system] if v]


def child_env() -> dict[str, str]:
    """The environment of a worker process: no broker URL of the caller's own."""
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


async def wait_key(admin: RespClient, key: str, timeout: float = 30.0) -> bytes:
    """Poll ``key`` until it exists; return its value."""
    with trio.fail_after(timeout):
        while True:
            value = await admin.execute("GET", key)
            if value is not None:
                return bytes(value)
            await trio.sleep(0.01)


async def used_memory(admin: RespClient) -> int:
    """The server's ``used_memory`` (``INFO memory``), in bytes."""
    info = bytes(await admin.execute("INFO", "memory")).decode()
    for line in info.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError("INFO memory has no used_memory")


async def child_result(admin: RespClient, tag: str) -> dict[str, Any]:
    """The stamps a worker process stored, removed from the server once read."""
    result = dict(json.loads(await wait_key(admin, result_key(tag), timeout=5.0)))
    await admin.execute("DEL", result_key(tag), ready_key(tag))
    return result


def record_drain(
    res: Results, system: str, concurrency: int, result: dict[str, Any], n: int
) -> None:
    """Record a drain's processing rate and worker CPU per job."""
    if result["count"] != n:
        raise RuntimeError(f"{system}: worker handled {result['count']} jobs, expected {n}")
    rate = n / (result["last"] - result["first"])
    cpu = result["cpu"] / n * 1e6
    # The raw loops have no concurrency setting: their drain stands for both columns.
    for c in (10, 100) if system != TRIOQUEUE else (concurrency,):
        res.add(f"processing c={c}", system, rate)
        res.add(f"worker cpu c={c}", system, cpu)


async def bulk_trioqueue(admin: RespClient, url: str, prefix: str, n: int, res: Results) -> None:
    """``Client.send_many`` of N jobs: bulk send rate and memory per queued job."""
    msgs = [Ping(time.time()) for _ in range(n)]
    async with app.connect(url, prefix=prefix) as client:
        before = await used_memory(admin)
        t0 = time.perf_counter()
        jobs = await client.send_many(msgs)
        elapsed = time.perf_counter() - t0
        after = await used_memory(admin)
    assert len(jobs) == n
    res.add("bulk send", TRIOQUEUE, n / elapsed)
    res.add("memory queued", TRIOQUEUE, (after - before) / n)


async def bulk_floor(admin: RespClient, url: str, stream: str, n: int, res: Results) -> None:
    """The floor's bulk send: ``XADD`` pipelined in batches of 500."""
    stamps = [str(time.time()) for _ in range(n)]
    async with open_resp(url) as client:
        before = await used_memory(admin)
        t0 = time.perf_counter()
        for start in range(0, n, RAW_BATCH):
            await client.pipeline(
                [("XADD", stream, "*", "t", t) for t in stamps[start : start + RAW_BATCH]]
            )
        elapsed = time.perf_counter() - t0
        after = await used_memory(admin)
    res.add("bulk send", FLOOR, n / elapsed)
    res.add("memory queued", FLOOR, (after - before) / n)


async def bulk_coredis(admin: RespClient, url: str, stream: str, n: int, res: Results) -> None:
    """The floor's bulk send through a coredis pipeline."""
    stamps = [str(time.time()) for _ in range(n)]
    async with coredis_client(url) as client:
        before = await used_memory(admin)
        t0 = time.perf_counter()
        for start in range(0, n, RAW_BATCH):
            async with client.pipeline(transaction=False) as pipe:
                for t in stamps[start : start + RAW_BATCH]:
                    pipe.xadd(stream, {"t": t})
        elapsed = time.perf_counter() - t0
        after = await used_memory(admin)
    res.add("bulk send", COREDIS, n / elapsed)
    res.add("memory queued", COREDIS, (after - before) / n)


async def drain(
    admin: RespClient, url: str, system: str, n: int, res: Results, concurrency: int = 0
) -> None:
    """Bulk-send N jobs, drain them with one worker process, and measure what the
    server holds afterwards (default settings: outcomes kept for ``result_ttl``)."""
    await admin.execute("FLUSHALL", "SYNC")
    tag = f"{system[0]}{secrets.token_hex(4)}"
    stream = f"{tag}:stream"
    before = await used_memory(admin)
    spec: dict[str, Any] = {"system": system, "mode": "drain", "url": url, "expect": n, "tag": tag}
    if system == TRIOQUEUE:
        await bulk_trioqueue(admin, url, tag, n, res)
        spec |= {"prefix": tag, "concurrency": concurrency}
    else:
        await (bulk_floor if system == FLOOR else bulk_coredis)(admin, url, stream, n, res)
        spec |= {"stream": stream}
    async with child(spec):
        pass
    record_drain(res, system, concurrency, await child_result(admin, tag), n)
    res.add("memory left", system, (await used_memory(admin) - before) / n)


async def one_at_a_time(call: Callable[[], Awaitable[object]], n: int) -> float:
    """Calls per second, each awaited before the next starts."""
    for _ in range(SEND_WARMUP):
        await call()
    t0 = time.perf_counter()
    for _ in range(n):
        await call()
    return n / (time.perf_counter() - t0)


async def concurrently(call: Callable[[], Awaitable[object]], n: int) -> float:
    """Calls per second from ``SEND_CONCURRENCY`` tasks, each calling one at a time."""
    per_task = max(1, n // SEND_CONCURRENCY)

    async def task() -> None:
        for _ in range(per_task):
            await call()

    for _ in range(SEND_WARMUP):
        await call()
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(SEND_CONCURRENCY):
            nursery.start_soon(task)
    return per_task * SEND_CONCURRENCY / (time.perf_counter() - t0)


def sync_one_at_a_time(call: Callable[[], object], n: int) -> float:
    """Calls per second of a blocking call, one after the other (in a worker thread)."""
    for _ in range(SEND_WARMUP):
        call()
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - t0)


async def sends(admin: RespClient, url: str, n: int, res: Results) -> None:
    """Single, concurrent and synchronous send rates of every system, one after the
    other on one server (nothing consumes these jobs)."""
    await admin.execute("FLUSHALL", "SYNC")
    stream = "sends:stream"
    prefix = f"s{secrets.token_hex(4)}"

    def stamp() -> str:
        return str(time.time())

    async with (
        open_resp(url) as floor,
        coredis_client(url) as core,
        app.connect(url, prefix=prefix) as client,
    ):

        async def floor_xadd() -> object:
            return await floor.execute("XADD", stream, "*", "t", stamp())

        async def core_xadd() -> object:
            return await core.xadd(stream, {"t": stamp()})

        async def tq_send() -> object:
            return await client.send(Ping(time.time()))

        res.add("single send", FLOOR, await one_at_a_time(floor_xadd, n))
        res.add("single send", COREDIS, await one_at_a_time(core_xadd, n))
        res.add("single send", TRIOQUEUE, await one_at_a_time(tq_send, n))

        def sync_rates() -> tuple[float, float]:
            plain = redis_py.Redis.from_url(url)
            try:
                raw = sync_one_at_a_time(lambda: plain.xadd(stream, {"t": stamp()}), n)
            finally:
                plain.close()
            with app.connect_sync(url, prefix=prefix) as sync:
                tq = sync_one_at_a_time(lambda: sync.send(Ping(time.time())), n)
            return raw, tq

        raw, tq = await trio.to_thread.run_sync(sync_rates)
        res.add("sync single send", REDIS_PY, raw)
        res.add("sync single send", SYNC_CLIENT, tq)
        # Concurrent sends are about four times as fast, so they get four times the jobs.
        res.add("concurrent send", FLOOR, await concurrently(floor_xadd, 4 * n))
        res.add("concurrent send", COREDIS, await concurrently(core_xadd, 4 * n))
        res.add("concurrent send", TRIOQUEUE, await concurrently(tq_send, 4 * n))


async def latency(admin: RespClient, url: str, jobs: int, res: Results) -> None:
    """All three consumers run at once and the sends take turns, so drift in the
    machine's load (other processes, CPU frequency) hits every system alike."""
    await admin.execute("FLUSHALL", "SYNC")
    tag = f"l{secrets.token_hex(4)}"
    expect = LATENCY_WARMUP + jobs
    base = {"mode": "latency", "url": url, "expect": expect}
    specs: dict[str, dict[str, Any]] = {
        TRIOQUEUE: base
        | {"system": TRIOQUEUE, "prefix": tag, "tag": tag, "concurrency": LATENCY_CONCURRENCY},
        FLOOR: base | {"system": FLOOR, "stream": f"{tag}:floor", "tag": f"{tag}:floor"},
        COREDIS: base | {"system": COREDIS, "stream": f"{tag}:core", "tag": f"{tag}:core"},
    }
    async with (
        app.connect(url, prefix=tag) as client,
        open_resp(url) as floor,
        coredis_client(url) as core,
        child(specs[TRIOQUEUE]),
        child(specs[FLOOR]),
        child(specs[COREDIS]),
    ):
        for spec in specs.values():
            await wait_key(admin, ready_key(spec["tag"]))
        floor_stream, core_stream = specs[FLOOR]["stream"], specs[COREDIS]["stream"]
        for i in range(expect):
            warm = i < LATENCY_WARMUP

            def sent(warm: bool = warm) -> float:
                return WARMUP if warm else time.time()

            await client.send(Ping(sent()))
            await trio.sleep(LATENCY_GAP)
            await floor.execute("XADD", floor_stream, "*", "t", str(sent()))
            await trio.sleep(LATENCY_GAP)
            await core.xadd(core_stream, {"t": str(sent())})
            await trio.sleep(LATENCY_GAP)
    for system, spec in specs.items():
        samples = (await child_result(admin, spec["tag"]))["latencies"]
        res.latency.setdefault(system, []).extend(samples)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values``, linearly interpolated."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------- report


@attrs.frozen
class Target:
    """A target of the performance issue: trioqueue's figure against a bound.

    ``relative`` bounds compare the ratio to the floor; the others the figure
    itself (bytes). ``at_least`` says which side is good."""

    bound: float
    at_least: bool
    relative: bool = True

    def met(self, value: float, ratio: float) -> bool:
        """Whether trioqueue's ``value`` (its ``ratio`` to the floor) meets the target."""
        got = ratio if self.relative else value
        return got >= self.bound if self.at_least else got <= self.bound

    def __str__(self) -> str:
        op = ">=" if self.at_least else "<="
        return f"{op} {self.bound:g}x floor" if self.relative else f"{op} {self.bound:g} bytes"


@attrs.frozen
class Row:
    """One line of the table (and of the JSON file's ``figures``)."""

    figure: str
    unit: str
    floor: float
    client: float
    client_ratio: float
    trioqueue: float
    ratio: float
    target: str
    met: bool | None
    # Whose figures the client and trioqueue columns hold in this row.
    client_name: str = COREDIS
    trioqueue_name: str = TRIOQUEUE


# figure key, label, unit, target (None: a diagnostic)
RATE_ROWS: list[tuple[str, str, str, Target | None]] = [
    ("bulk send", "bulk send", "jobs/s", Target(0.40, True)),
    ("single send", "single send", "jobs/s", Target(0.25, True)),
    ("concurrent send", f"concurrent send, {SEND_CONCURRENCY} tasks", "jobs/s",
     Target(0.50, True)),
    ("sync single send", "single send, sync", "jobs/s", None),
    ("processing c=10", "processing, concurrency 10", "jobs/s", Target(0.10, True)),
    ("processing c=100", "processing, concurrency 100", "jobs/s", Target(0.25, True)),
    ("memory queued", "memory per queued job", "bytes", Target(64, False, relative=False)),
    ("memory left", "bytes per job left after run", "bytes",
     Target(150, False, relative=False)),
    ("worker cpu c=10", "worker CPU per job, c=10", "us", None),
    ("worker cpu c=100", "worker CPU per job, c=100", "us", None),
]  # fmt: skip
LATENCY_ROWS = [("p50", 0.50, Target(2.0, False)), ("p99", 0.99, Target(3.0, False))]


def paired_ratio(values: Sequence[float], floor: Sequence[float]) -> float:
    """Median over repetitions of a figure over the floor's figure of the same
    repetition: runs close in time share the machine's load of the moment, so this
    ratio is steadier than the ratio of the two medians."""
    return statistics.median(v / f for v, f in zip(values, floor, strict=True))


def summarize(res: Results) -> list[Row]:
    """The table: medians of each system's figures and their paired ratios to the floor."""
    med = statistics.median
    rows = []
    for key, label, unit, target in RATE_ROWS:
        client_name, tq_name = (REDIS_PY, SYNC_CLIENT) if key.startswith("sync") else (
            COREDIS, TRIOQUEUE)  # fmt: skip
        # The sync row has no floor of its own: the floor's single XADD stands for it.
        floor = res.per_rep("single send" if key.startswith("sync") else key, FLOOR)
        client, tq = res.per_rep(key, client_name), res.per_rep(key, tq_name)
        ratio = paired_ratio(tq, floor)
        tq_med = med(tq)
        if target is not None:
            target_text, met = str(target), target.met(tq_med, ratio)
        elif key.startswith("sync"):
            target_text = f"none; {paired_ratio(tq, client):.2f}x redis-py XADD"
            met = None
        else:
            target_text, met = "", None
        rows.append(Row(label, unit, med(floor), med(client), paired_ratio(client, floor),
                        tq_med, ratio, target_text, met, client_name, tq_name))  # fmt: skip
    latency_rows = []
    for name, q, target in LATENCY_ROWS:
        ms = {s: percentile(v, q) * 1000 for s, v in res.latency.items()}
        ratio = ms[TRIOQUEUE] / ms[FLOOR]
        latency_rows.append(Row(f"latency {name}", "ms", ms[FLOOR], ms[COREDIS],
                        ms[COREDIS] / ms[FLOOR], ms[TRIOQUEUE], ratio, str(target),
                        target.met(ms[TRIOQUEUE], ratio)))  # fmt: skip
    # Latency sits after processing, as the table always had it.
    at = next(i for i, r in enumerate(rows) if r.figure == "processing, concurrency 100") + 1
    return rows[:at] + latency_rows + rows[at:]


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    """The table as text, with every target marked met or MISSED."""
    print(
        f"\nN={args.n} jobs per drain, {args.sends} single sends, {args.reps} repetition(s); "
        "medians over repetitions, latency from pooled samples"
    )
    print("x floor: median of per-repetition ratios to the floor measured in the same run")
    print("sync row: client column is redis-py's own XADD, trioqueue column is SyncClient\n")
    header = (
        f"{'figure':<32}{'unit':>7}{'floor':>11}{'coredis':>11}{'x floor':>8}"
        f"{'trioqueue':>11}{'x floor':>8}  target"
    )
    print(header)
    print("-" * (len(header) + 30))
    for r in rows:
        mark = "" if r.met is None else ("  met" if r.met else "  MISSED")
        line = (
            f"{r.figure:<32}{r.unit:>7}{r.floor:>11,.1f}{r.client:>11,.1f}{r.client_ratio:>8.2f}"
            f"{r.trioqueue:>11,.1f}{r.ratio:>8.2f}  {r.target}{mark}"
        )
        print(line.rstrip())


async def bench(n: int, sends_n: int, reps: int, latency_jobs: int) -> Results:
    """Every measurement, ``reps`` times, interleaved, on one private server."""
    res = Results()
    with tempfile.TemporaryDirectory(prefix="trioqueue-bench-") as tmp:
        server = Server(Path(tmp))
        try:
            async with open_resp(server.url) as admin:
                for rep in range(reps):
                    print(f"repetition {rep + 1}/{reps} ...", file=sys.stderr, flush=True)
                    res.rep = rep
                    # The raw drains sit between the two trioqueue drains they are
                    # compared to.
                    await drain(admin, server.url, TRIOQUEUE, n, res, concurrency=100)
                    await drain(admin, server.url, FLOOR, n, res)
                    await drain(admin, server.url, COREDIS, n, res)
                    await drain(admin, server.url, TRIOQUEUE, n, res, concurrency=10)
                    await sends(admin, server.url, sends_n, res)
                    await latency(admin, server.url, latency_jobs, res)
        finally:
            server.stop()
    return res


def main(argv: list[str] | None = None) -> None:
    """Command line: run the benchmark (or, with ``--child``, one worker process)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="jobs per drain (20000)")
    parser.add_argument(
        "--sends", type=int, default=SENDS, help=f"single sends per system ({SENDS})"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
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
    res = trio.run(bench, args.n, args.sends, args.reps, args.latency_jobs)
    rows = summarize(res)
    print_table(rows, args)
    print(f"\n(took {time.monotonic() - started:.0f}s)")
    if args.json:
        doc = {
            "n": args.n,
            "sends": args.sends,
            "reps": args.reps,
            "latency_jobs": args.latency_jobs,
            "figures": [attrs.asdict(r) for r in rows],
            "samples": res.rates,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
