"""Dashboard: how long one broker snapshot takes, and how many requests per second
``GET /api/status`` serves, for 10 queues x 8 partitions (``--queues``, ``--partitions``).

The dashboard runs in this process on Hypercorn's Trio worker, as ``trioqueue
dashboard`` does; the load comes from a child process (a minimal HTTP/1.1 client on
Trio, ``--clients`` concurrent keep-alive connections for ``--seconds``), so the two
do not share one CPU's time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

import trioqueue
from trioqueue._config_load import parse_config
from trioqueue._keys import PartitionKeys
from trioqueue.dashboard import Dashboard
from trioqueue.dashboard._history import HistoryReader
from trioqueue.dashboard._snapshot import take_snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Server, free_port

LOAD = """
import sys, time, trio
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
clients, seconds = int(sys.argv[4]), float(sys.argv[5])
REQ = f"GET {path} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n".encode()
async def main():
    done = 0
    end = time.monotonic() + seconds
    async def one():
        nonlocal done
        stream = await trio.open_tcp_stream(host, port)
        buf = b""
        while time.monotonic() < end:
            await stream.send_all(REQ)
            while True:
                head, sep, rest = buf.partition(b"\\r\\n\\r\\n")
                if sep:
                    n = int(head.lower().split(b"content-length: ")[1].split(b"\\r\\n")[0])
                    if len(rest) >= n:
                        assert head.startswith(b"HTTP/1.1 200"), head[:40]
                        buf = rest[n:]
                        break
                buf += await stream.receive_some(65536)
            done += 1
        await stream.aclose()
    async with trio.open_nursery() as n:
        for _ in range(clients):
            n.start_soon(one)
    print(done / seconds)
trio.run(main)
"""


@attrs.frozen
class Msg:
    n: int


def make_app(queues: int) -> trioqueue.App:
    """One handler on the first queue; the others exist in the config only (sends
    name their queue)."""
    app = trioqueue.App("dashboard_bench")

    @app.handler(queue="q0")
    async def handle(msg: Msg) -> None:
        return None

    return app


async def run(url: str, args: argparse.Namespace) -> None:
    app = make_app(args.queues)
    cfg = parse_config(
        {
            "app": "bench:app",
            "broker": {"url": url, "prefix": "dash"},
            "queues": {f"q{q}": {"partitions": args.partitions} for q in range(args.queues)},
        }
    )
    async with app.connect(url, prefix="dash") as client:
        for q in range(args.queues):
            for p in range(args.partitions):
                meta = PartitionKeys("dash", f"q{q}", p).meta
                await client.redis.hset(meta, {"partitions": args.partitions})
            await client.send_many(
                [Msg(i) for i in range(args.jobs)], queue=f"q{q}", key=lambda m: str(m.n)
            )
        queues = [f"q{q}" for q in range(args.queues)]
        took = []
        history = HistoryReader()  # as the dashboard's loop keeps one
        first = await take_snapshot(client.redis, "dash", queues, [], history)
        for _ in range(args.snapshots):
            snap = await take_snapshot(client.redis, "dash", queues, [], history)
            took.append(snap.took)
        assert sum(q["backlog"] for q in snap.queues.values()) == args.queues * args.jobs
    print(
        f"{args.queues} queues x {args.partitions} partitions: one snapshot takes "
        f"{statistics.median(took) * 1000:.1f} ms (median of {args.snapshots}, "
        f"min {min(took) * 1000:.1f} ms; the first, reading the whole hour of history: "
        f"{first.took * 1000:.1f} ms)"
    )
    dash = Dashboard(cfg, app=app, interval=5.0)
    port = free_port()
    hc = HypercornConfig()
    hc.bind = [f"127.0.0.1:{port}"]
    hc.accesslog = None
    hc.errorlog = None
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, dash.asgi, hc)  # type: ignore[arg-type]
        load = await trio.run_process(
            [sys.executable, "-c", LOAD, "127.0.0.1", str(port), args.path,
             str(args.clients), str(args.seconds)],
            capture_stdout=True,
        )  # fmt: skip
        rate = float(load.stdout.decode().strip())
        print(
            f"GET {args.path}: {rate:,.0f} requests/s ({args.clients} keep-alive clients, "
            f"{args.seconds:.0f} s, one Hypercorn worker)"
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=200, help="jobs waiting per queue")
    parser.add_argument("--snapshots", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--path", default="/api/status", help="the path loaded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            trio.run(run, server.url, args)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
