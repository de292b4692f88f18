"""Per-command cost of candidate Redis clients, measured alone, on a private server.

Each client runs ``SET`` one call at a time, then from 32 tasks at once on one client
(32 threads for the synchronous redis-py), against one private valkey-server. The
clients take turns within every repetition, and each figure is reported as a ratio
to the floor client (``resp.RespClient``: one Trio socket, hiredis parsing) measured
in the same repetition. valkey-glide is measured if it can be imported (it is an
optional install), else skipped with a note.

    python benchmarks/clients.py [--n 1000] [--reps 5] [--json clients.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import attrs
import coredis
import redis as redis_py
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Server
from resp import open_resp

from trioqueue._redis import open_redis

CONCURRENCY = 32
# Calls made before timing: connecting, first-call caches.
WARMUP = 50
KEY, VALUE = "clients:key", "v" * 16

# An async client as measured here: a ``SET`` coroutine function, inside a context
# that connects before and closes after.
AsyncSet = Callable[[], Awaitable[object]]
Opener = Callable[[str, int], AbstractAsyncContextManager[AsyncSet]]


def package_version(name: str) -> str:
    """The installed version of distribution ``name`` ("?" if unknown)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


@asynccontextmanager
async def floor_client(host: str, port: int) -> AsyncIterator[AsyncSet]:
    """The floor: one Trio socket, hiredis parsing, commands pipelined across tasks."""
    async with open_resp(f"redis://{host}:{port}/0") as client:

        async def call() -> object:
            return await client.execute("SET", KEY, VALUE)

        yield call


@asynccontextmanager
async def trioqueue_client(host: str, port: int) -> AsyncIterator[AsyncSet]:
    """trioqueue's own client (``trioqueue._redis``), as the workers and ``Client`` use it."""
    async with open_redis(f"redis://{host}:{port}/0") as client:

        async def call() -> object:
            return await client.execute("SET", KEY, VALUE)

        yield call


@asynccontextmanager
async def coredis_client(host: str, port: int) -> AsyncIterator[AsyncSet]:
    """coredis with its defaults, bytes replies (as trioqueue uses it)."""
    client: coredis.Redis[bytes] = coredis.Redis(host=host, port=port, decode_responses=False)
    async with client:

        async def call() -> object:
            return await client.set(KEY, VALUE)

        yield call


def glide_opener() -> tuple[Opener | None, str]:
    """valkey-glide's opener and a label, or None and why it is skipped."""
    try:
        from glide import GlideClient, GlideClientConfiguration, NodeAddress
    except ImportError as exc:
        return None, f"valkey-glide skipped: cannot import it ({exc}); pip install valkey-glide"

    @asynccontextmanager
    async def glide_client(host: str, port: int) -> AsyncIterator[AsyncSet]:
        # A generous request timeout: the default (250 ms) fails calls on a loaded box.
        config = GlideClientConfiguration([NodeAddress(host, port)], request_timeout=5000)
        client = await GlideClient.create(config)
        try:

            async def call() -> object:
                return await client.set(KEY, VALUE)

            yield call
        finally:
            await client.close()

    return glide_client, f"valkey-glide {package_version('valkey-glide')} (Trio via anyio)"


async def async_rates(opener: Opener, host: str, port: int, n: int) -> tuple[float, float]:
    """Calls per second one at a time, and from ``CONCURRENCY`` tasks on one client."""
    async with opener(host, port) as call:
        for _ in range(WARMUP):
            await call()
        t0 = time.perf_counter()
        for _ in range(n):
            await call()
        single = n / (time.perf_counter() - t0)
        per_task = 4 * n // CONCURRENCY

        async def task() -> None:
            for _ in range(per_task):
                await call()

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(CONCURRENCY):
                nursery.start_soon(task)
        concurrent = per_task * CONCURRENCY / (time.perf_counter() - t0)
    return single, concurrent


def redis_py_rates(host: str, port: int, n: int) -> tuple[float, float]:
    """redis-py: one call at a time, then ``CONCURRENCY`` threads sharing one client
    (each thread takes a connection of the client's pool)."""
    client = redis_py.Redis(host=host, port=port)
    try:
        for _ in range(WARMUP):
            client.set(KEY, VALUE)
        t0 = time.perf_counter()
        for _ in range(n):
            client.set(KEY, VALUE)
        single = n / (time.perf_counter() - t0)
        per_thread = 4 * n // CONCURRENCY

        def work() -> None:
            for _ in range(per_thread):
                client.set(KEY, VALUE)

        threads = [threading.Thread(target=work) for _ in range(CONCURRENCY)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        concurrent = per_thread * CONCURRENCY / (time.perf_counter() - t0)
    finally:
        client.close()
    return single, concurrent


@attrs.frozen
class Row:
    """One client's line of the table."""

    client: str
    single_us: float
    single_per_s: float
    single_ratio: float
    concurrent_per_s: float
    concurrent_ratio: float


FLOOR = "Trio + hiredis, one socket (floor)"


async def measure(port: int, n: int, reps: int) -> tuple[dict[str, list[tuple[float, float]]], str]:
    """Every client's two rates, ``reps`` times, the clients taking turns."""
    host = "127.0.0.1"
    glide, glide_label = glide_opener()
    openers: dict[str, Opener] = {
        FLOOR: floor_client,
        f"trioqueue._redis {package_version('trioqueue')}": trioqueue_client,
        f"coredis {package_version('coredis')}": coredis_client,
    }
    note = ""
    if glide is not None:
        openers[glide_label] = glide
    else:
        note = glide_label
    sync_label = f"redis-py {package_version('redis')} (sync; {CONCURRENCY} threads)"
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in openers}
    samples[sync_label] = []
    for rep in range(reps):
        print(f"repetition {rep + 1}/{reps} ...", file=sys.stderr, flush=True)
        for name, opener in openers.items():
            samples[name].append(await async_rates(opener, host, port, n))
        samples[sync_label].append(await trio.to_thread.run_sync(redis_py_rates, host, port, n))
    return samples, note


def summarize(samples: dict[str, list[tuple[float, float]]]) -> list[Row]:
    """Medians of each client's rates and of their per-repetition ratios to the floor."""
    med = statistics.median
    floor = samples[FLOOR]
    rows = []
    for name, got in samples.items():
        single = [s for s, _ in got]
        conc = [c for _, c in got]
        rows.append(
            Row(
                name,
                1e6 / med(single),
                med(single),
                med(s / f for s, (f, _) in zip(single, floor, strict=True)),
                med(conc),
                med(c / f for c, (_, f) in zip(conc, floor, strict=True)),
            )
        )
    return rows


def print_table(rows: list[Row], n: int, reps: int, note: str) -> None:
    """The table as text."""
    print(
        f"\nSET: {n} calls one at a time, {4 * n} from {CONCURRENCY} tasks at once on one "
        f"client; {reps} repetition(s), medians"
    )
    print("x floor: median of per-repetition ratios to the floor client's rate\n")
    header = (
        f"{'client':<46}{'one at a time':>14}{'':>10}{'x floor':>8}"
        f"{f'{CONCURRENCY} at once':>14}{'x floor':>8}"
    )
    print(header)
    print(f"{'':<46}{'us/call':>14}{'calls/s':>10}{'':>8}{'calls/s':>14}")
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.client:<46}{r.single_us:>14,.0f}{r.single_per_s:>10,.0f}{r.single_ratio:>8.2f}"
            f"{r.concurrent_per_s:>14,.0f}{r.concurrent_ratio:>8.2f}"
        )
    if note:
        print(f"\n{note}")


def main(argv: list[str] | None = None) -> None:
    """Command line: start a private server, measure, print (and write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="calls one at a time (1000)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (5)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trioqueue-clients-") as tmp:
        server = Server(Path(tmp))
        try:
            samples, note = trio.run(measure, server.port, args.n, args.reps)
        finally:
            server.stop()
    rows = summarize(samples)
    print_table(rows, args.n, args.reps, note)
    if args.json:
        doc: dict[str, Any] = {
            "n": args.n,
            "reps": args.reps,
            "concurrency": CONCURRENCY,
            "rows": [attrs.asdict(r) for r in rows],
            "samples": samples,
            "note": note,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
