"""Worker processes, a rate-limited producer and a nemesis for the fault tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

import trioqueue
from tests.conftest import Server, wait_for
from tests.fault.history import (
    Recorder,
    Report,
    check,
    load,
    now_ns,
    pending_jobs,
    read_final_state,
)
from tests.fault.worker_main import QUEUE, Work, make_app
from tests.raw import connected

WORKER_MAIN = Path(__file__).with_name("worker_main.py")
REPO = Path(__file__).resolve().parents[2]

# Lines every fault run prints in the terminal summary (see conftest.py).
FIGURES: list[tuple[str, str]] = []


@attrs.define
class WorkerProc:
    slot: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    member: str = ""
    killed: bool = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


class Workers:
    """Worker processes by slot; a restarted slot gets a new process and member id."""

    def __init__(self, root: Path, url: str, prefix: str, **options: Any) -> None:
        self.root = root
        self.url = url
        self.prefix = prefix
        self.options = options
        self.history = root / "history"
        self.logs = root / "logs"
        self.history.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.slots: dict[str, WorkerProc] = {}
        self.every: list[WorkerProc] = []
        self._n = 0

    def _args(self, history: Path) -> list[str]:
        args = [sys.executable, str(WORKER_MAIN), "--url", self.url, "--prefix", self.prefix]
        args += ["--history", str(history)]
        for key, value in self.options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        return args

    async def start(self, slot: str, *, may_die: bool = False) -> WorkerProc:
        """Start a worker in ``slot``; wait until its supervisor runs.

        With ``may_die``, a worker that dies right after its supervisor started (a job
        it took over killed it) is returned dead instead of failing the test.
        """
        self._n += 1
        name = f"{slot}-{self._n}"
        out, err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        # Popen (not trio's) so the synchronous fixture finalizer can reap it.
        with out.open("wb") as fout, err.open("wb") as ferr:
            proc = subprocess.Popen(  # noqa: ASYNC220
                self._args(self.history / f"{name}.jsonl"),
                stdout=fout,
                stderr=ferr,
                cwd=REPO,
                start_new_session=True,
            )
        wp = WorkerProc(slot, proc, out, err)
        self.every.append(wp)
        self.slots[slot] = wp

        def started() -> bool:
            return "started " in out.read_text() or not wp.alive()

        await wait_for(started, timeout=30)
        if "started " in out.read_text():
            wp.member = out.read_text().split("started ", 1)[1].split()[0]
        elif may_die and (m := re.search(r"worker (\S+) started:", wp.stderr())):
            wp.member = m.group(1)
        else:
            raise AssertionError(f"worker {name} exited at start:\n{wp.stderr()}")
        return wp

    def signal(self, slot: str, sig: int) -> WorkerProc:
        wp = self.slots[slot]
        os.kill(wp.proc.pid, sig)
        return wp

    def kill(self, slot: str) -> WorkerProc:
        wp = self.signal(slot, signal.SIGKILL)
        wp.killed = True
        wp.proc.wait()
        return wp

    async def stop_all(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every live worker (graceful drain); return the exit code of every
        process not killed on purpose, by member (a crashed one shows its code)."""
        live = [wp for wp in self.slots.values() if wp.alive()]
        for wp in live:
            os.kill(wp.proc.pid, signal.SIGCONT)
            os.kill(wp.proc.pid, signal.SIGTERM)
        with trio.move_on_after(timeout):
            while any(wp.alive() for wp in live):
                await trio.sleep(0.05)
        return {wp.member: wp.proc.poll() for wp in self.every if not wp.killed}

    def cleanup(self) -> None:
        for wp in self.every:
            if wp.alive():
                os.kill(wp.proc.pid, signal.SIGCONT)
                os.kill(wp.proc.pid, signal.SIGKILL)
            wp.proc.wait()

    def started(self, member: str, kinds: dict[str, str], kind: str) -> list[str]:
        """Jobs of ``kind`` that ``member`` started and has not finished."""
        running: dict[str, bool] = {}
        for e in load(self.history):
            if e.get("member") == member and kinds.get(e.get("job", "")) == kind:
                if e["ev"] == "start":
                    running[e["job"]] = True
                elif e["ev"] == "finish":
                    running.pop(e["job"], None)
        return sorted(running)

    def stderr_of_all(self) -> str:
        return "\n".join(wp.stderr() for wp in self.every)


class Producer:
    """Sends ``Work`` jobs at a steady rate, recording each send's outcome.

    A send whose outcome is unknown (the connection failed during the call) is
    recorded as ``send.info`` and retried with the same job id: sends with a caller's
    job id are idempotent, so the retry cannot enqueue the job twice.
    """

    def __init__(self, url: str, prefix: str, history: Path) -> None:
        self.url = url
        self.prefix = prefix
        self.rec = Recorder(history / "producer.jsonl", "producer")
        self.app = make_app(self.rec, {}, 0, 0)
        self.sent = 0
        self.done = trio.Event()

    async def run(self, n: int, rate: float, kind: Callable[[int], str] = lambda i: "ok") -> None:
        try:
            async with self.app.connect(self.url, prefix=self.prefix, socket_timeout=5) as client:
                start = trio.current_time()
                for i in range(n):
                    await trio.sleep_until(start + i / rate)
                    await self._send(client, f"j{i:06d}", Work(i, kind(i)))
        finally:
            self.done.set()

    async def _send(self, client: trioqueue.Client, job: str, msg: Work) -> None:
        self.rec.record("send.invoke", job=job, kind=msg.kind)
        delay = 0.05
        deadline = trio.current_time() + 30
        while True:
            try:
                sent = await client.send(msg, job_id=job)
            except (trioqueue.QueueFull, trioqueue.MessageTooLarge) as exc:
                self.rec.record("send.fail", job=job, error=str(exc))
            except trioqueue.BrokerUnavailable as exc:
                self.rec.record("send.info", job=job, error=str(exc))
                if trio.current_time() < deadline:
                    await trio.sleep(delay)
                    delay = min(0.5, delay * 2)
                    continue
            except trioqueue.BrokerError as exc:
                # Refused by the server: a script error may have left part of its work
                # done, so the outcome is unknown, but retrying would not change it.
                self.rec.record("send.info", job=job, error=str(exc))
            else:
                self.rec.record("send.ok", job=job, duplicate=sent.duplicate)
            break
        self.sent += 1


class Nemesis:
    """Injects faults and records, for each, the jobs the broker had handed to its victims."""

    def __init__(self, server: Server, prefix: str, workers: Workers) -> None:
        self.server = server
        self.prefix = prefix
        self.workers = workers
        self.rec = Recorder(workers.history / "nemesis.jsonl", "nemesis")
        self.count: dict[str, int] = {}

    async def held(self, member: str | None) -> list[str]:
        async with connected(self.server.url) as redis:
            return await pending_jobs(redis, self.prefix, QUEUE, member)

    async def wait_held(self, slot: str, at_least: int, timeout: float = 10.0) -> None:
        """Wait until the worker in ``slot`` holds jobs, so the fault hits work."""
        member = self.workers.slots[slot].member

        async def enough() -> bool:
            return len(await self.held(member)) >= at_least

        await wait_for(enough, timeout=timeout, interval=0.01)

    def _record(self, kind: str, target: str, t0: int, t1: int, inflight: list[str]) -> None:
        self.count[kind] = self.count.get(kind, 0) + 1
        self.rec.record("fault", kind=kind, target=target, t0=t0, t1=t1, inflight=inflight)

    async def sigkill(self, slot: str, restart_after: float = 0.7) -> None:
        t0 = now_ns()
        wp = self.workers.kill(slot)
        # The dead process can no longer settle anything: its pending entries are
        # exactly what it held when it died.
        self._record("sigkill", wp.member, t0, t0, await self.held(wp.member))
        await trio.sleep(restart_after)
        await self.workers.start(slot)

    async def sigstop(self, slot: str, duration: float) -> None:
        t0 = now_ns()
        wp = self.workers.signal(slot, signal.SIGSTOP)
        before = await self.held(wp.member)
        # A read the worker sent just before it stopped still delivers entries to it
        # for up to its block time; look again once that passed (well before the TTL).
        settle = 0.5
        await trio.sleep(settle)
        after = await self.held(wp.member)
        await trio.sleep(duration - settle)
        self.workers.signal(slot, signal.SIGCONT)
        self._record("sigstop", wp.member, t0, now_ns(), _union(before, after))

    async def server_restart(self, down: float) -> None:
        before = await self.held(None)
        t0 = now_ns()
        self.server.kill()
        await trio.sleep(down)
        await trio.to_thread.run_sync(self.server.start)
        t1 = now_ns()
        # Entries delivered between the first read and the kill came back with the
        # append-only file: what the server holds now completes the picture.
        after = await self.held(None)
        self._record("server-kill", "server", t0, t1, _union(before, after))

    async def client_kill(self) -> None:
        before = await self.held(None)
        t0 = now_ns()
        reply = await raw_command(self.server.port, "CLIENT", "KILL", "TYPE", "normal")
        assert reply.startswith(b":"), reply
        after = await self.held(None)
        self._record("client-kill", "server", t0, t0, _union(before, after))

    async def crashed(self, wp: WorkerProc) -> None:
        """Record that a worker died by itself (e.g. a job killed it)."""
        t0 = now_ns()
        self._record("crash", wp.member, t0, t0, await self.held(wp.member))

    async def client_pause(self, ms: int) -> None:
        inflight = await self.held(None)
        t0 = now_ns()
        reply = await raw_command(self.server.port, "CLIENT", "PAUSE", str(ms), "WRITE")
        assert reply == b"+OK\r\n", reply
        await trio.sleep(ms / 1000)
        self._record("client-pause", "server", t0, t0 + ms * 1_000_000, inflight)


def _union(a: list[str], b: list[str]) -> list[str]:
    return sorted(set(a) | set(b))


async def raw_command(port: int, *args: str) -> bytes:
    """Send one command over a fresh plain socket, as any other program could."""
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(out)
        reply = b""
        with trio.fail_after(5):
            while not reply.endswith(b"\r\n"):
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                reply += chunk
    return reply


async def settled(server: Server, prefix: str) -> bool:
    """Whether nothing is left to do: stream, delayed set and pending entries empty."""
    from trioqueue._keys import PartitionKeys

    keys = PartitionKeys(prefix, QUEUE)
    async with connected(server.url) as redis:
        if await redis.xlen(keys.stream) or await redis.zcard(keys.delayed):
            return False
        summary: Any = await redis.xpending(keys.stream, "trioqueue")
        return int(summary.pending) == 0


async def drain(server: Server, prefix: str, producer: Producer, timeout: float) -> float:
    """Wait until the producer is done and every job settled; return seconds waited."""
    await producer.done.wait()
    t0 = trio.current_time()

    async def done() -> bool:
        try:
            return await settled(server, prefix)
        except trioqueue.BrokerError:
            return False

    try:
        await wait_for(done, timeout=timeout, interval=0.1)
    except AssertionError:
        left = await backlog(server, prefix)
        raise AssertionError(f"jobs did not settle within {timeout}s: {left}") from None
    return trio.current_time() - t0


async def backlog(server: Server, prefix: str) -> dict[str, Any]:
    """What is left in the queue, and who holds it (for failure messages)."""
    from trioqueue._keys import PartitionKeys

    keys = PartitionKeys(prefix, QUEUE)
    async with connected(server.url) as redis:
        summary: Any = await redis.xpending(keys.stream, "trioqueue")
        return {
            "stream": await redis.xlen(keys.stream),
            "delayed": await redis.zcard(keys.delayed),
            "pending": int(summary.pending),
            "by consumer": {_text(k): v for k, v in (summary.consumers or {}).items()},
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def finish(
    name: str,
    server: Server,
    prefix: str,
    workers: Workers,
    *,
    expected_dead: dict[str, str] | None = None,
) -> tuple[Report, dict[str, int | None]]:
    """Stop the workers gracefully, read the broker's final state and check the history."""
    codes = await workers.stop_all()
    async with connected(server.url) as redis:
        final = await read_final_state(redis, prefix, QUEUE)
    report = check(load(workers.history), final, expected_dead=expected_dead)
    FIGURES.append((name, report.summary()))
    print(f"\n{name}:\n{report.summary()}")
    return report, codes
