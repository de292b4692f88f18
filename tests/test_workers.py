"""`trioqueue run --workers N`: a parent supervisor and its worker processes, for real.

Every test starts the console script as a subprocess on the session server (or, for
the embedded broker, a data directory of its own), reads its log, and kills only the
processes it started, by PID: the parent, and the children whose PIDs the parent
logged. Waits are for conditions (a log line, a file, a process gone), each bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio

import trioqueue
from tests.conftest import Server, free_port, wait_for
from tests.test_cli import TRIOQUEUE, cli_env
from trioqueue._keys import GROUP, PartitionKeys

TASKS = """
import os
import pathlib
import time

import attrs
import trio

import trioqueue

HERE = pathlib.Path(__file__).parent
INDEX = os.environ.get("TRIOQUEUE_WORKER_INDEX")
if INDEX is not None and (HERE / "crash").exists():
    os._exit(3)  # a worker that dies at start, as a broken native extension would
if INDEX == "1" and (HERE / "broken").exists():
    raise RuntimeError("boom in worker 1 only")

app = trioqueue.App("workers-test")


@attrs.frozen
class Slow:
    n: int
    seconds: float = 0.3


@app.handler(queue="slow")
async def slow(msg: Slow) -> None:
    (HERE / f"started-{msg.n}").touch()
    with (HERE / "started.txt").open("a") as f:
        f.write(f"{msg.n} {os.getpid()}\\n")
    await trio.sleep(msg.seconds)
    with (HERE / "done.txt").open("a") as f:
        f.write(f"{msg.n} {os.getpid()}\\n")


@attrs.frozen
class Stuck:
    seconds: float


@app.handler(queue="stuck")
async def stuck(msg: Stuck) -> None:
    (HERE / "stuck").touch()
    time.sleep(msg.seconds)  # blocks the worker's event loop: it cannot drain
"""

WORKER = """
[worker]
block = 0.1
heartbeat_interval = 0.2
heartbeat_ttl = 1.0
shutdown_grace = 5.0
"""


@attrs.frozen
class Slow:
    """The app's Slow (same wire name), to send from the test."""

    n: int
    seconds: float = 0.3


@attrs.frozen
class Stuck:
    """The app's Stuck, to send from the test."""

    seconds: float


@attrs.define
class Parent:
    """A running `trioqueue run --workers N` and what it logged so far."""

    proc: trio.Process
    log: bytearray = attrs.Factory(bytearray)

    def text(self) -> str:
        return self.log.decode(errors="replace")

    def started(self) -> dict[int, tuple[int, str]]:
        """Worker index -> (pid, member id) of the latest start of each."""
        found = re.findall(r"worker (\d+) started: pid (\d+), member (\S+)", self.text())
        return {int(i): (int(pid), member) for i, pid, member in found}

    def children(self) -> set[int]:
        """Every child PID the parent logged."""
        return {int(pid) for pid in re.findall(r"worker \d+ starting: pid (\d+)", self.text())}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@asynccontextmanager
async def running(directory: Path, *args: str) -> AsyncIterator[Parent]:
    """Start `trioqueue run config.toml ARGS`; on the way out kill what is left."""
    assert TRIOQUEUE is not None, "the trioqueue console script is not installed"
    proc = await trio.lowlevel.open_process(
        [TRIOQUEUE, "run", "config.toml", *args],
        cwd=directory,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parent = Parent(proc)

    async def read_log() -> None:
        assert proc.stderr is not None
        async for chunk in proc.stderr:
            parent.log.extend(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log)
            yield parent
            with trio.fail_after(20):
                await proc.wait()
            nursery.cancel_scope.cancel()
    except BaseException:
        print(parent.text())  # shown by pytest with the failure
        raise
    finally:
        for pid in [proc.pid, *parent.children()]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.returncode is None:
            await proc.wait()


def write_project(directory: Path, server_url: str | None, prefix: str, extra: str = "") -> None:
    (directory / "tasks.py").write_text(TASKS, encoding="utf-8")
    broker = f'url = "{server_url}"\n' if server_url else 'data_dir = "data"\n'
    (directory / "config.toml").write_text(
        f'app = "tasks:app"\n[broker]\n{broker}prefix = "{prefix}"\n{WORKER}{extra}',
        encoding="utf-8",
    )


def runs(directory: Path, name: str) -> list[tuple[int, int]]:
    """(job number, worker pid) per line of ``started.txt`` or ``done.txt``."""
    path = directory / name
    if not path.exists():
        return []
    return [
        (int(n), int(pid)) for n, pid in (line.split() for line in path.read_text().splitlines())
    ]


def done(directory: Path) -> list[int]:
    return [n for n, _ in runs(directory, "done.txt")]


async def send(url: str, prefix: str, jobs: list[Slow]) -> None:
    app = trioqueue.App("sender")

    @app.handler(queue="slow")
    async def slow(msg: Slow) -> None:
        pass

    async with app.connect(url, prefix=prefix) as client:
        await client.send_many(jobs)


async def get(port: int, path: str) -> str:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\n\r\n".encode())
        raw = bytearray()
        while chunk := await stream.receive_some(65536):
            raw += chunk
    return raw.decode()


async def status(directory: Path) -> Any:
    assert TRIOQUEUE is not None
    proc = await trio.run_process(
        [TRIOQUEUE, "status", "config.toml", "--json"],
        cwd=directory,
        env=cli_env(),
        capture_stdout=True,
        capture_stderr=True,
    )
    return orjson.loads(proc.stdout)


async def test_members_metrics_and_a_graceful_stop(
    tmp_path: Path, server: Server, prefix: str, redis: Any
) -> None:
    """Two workers appear in `status` under their parent, the parent's /metrics sums
    theirs, and SIGTERM to the parent drains both (jobs in flight finish) and exits 0."""
    port = free_port()
    write_project(tmp_path, server.url, prefix, f"[metrics]\nport = {port}\n")
    async with running(tmp_path, "--workers", "2") as parent:
        await wait_for(lambda: len(parent.started()) == 2, timeout=30)
        doc = await status(tmp_path)
        parent_id = f"{socket.gethostname()}:{parent.proc.pid}"
        members = {m["id"]: m for m in doc["members"]}
        assert set(members) == {member for _, member in parent.started().values()}
        assert {m["parent"] for m in members.values()} == {parent_id}
        assert sorted(m["index"] for m in members.values()) == [0, 1]
        assert doc["supervisors"] == [{"id": parent_id, "members": list(members)}]

        await send(server.url, prefix, [Slow(n, seconds=0.0) for n in range(10)])
        await wait_for(lambda: len(done(tmp_path)) == 10)
        metrics = (await get(port, "/metrics")).split("\r\n\r\n", 1)[1]
        assert 'trioqueue_jobs_total{outcome="succeeded",queue="slow"} 10.0' in metrics
        assert "trioqueue_worker_processes 2.0" in metrics
        assert "trioqueue_broker_up 1.0" in metrics
        assert (await get(port, "/healthz")).endswith("\r\n\r\nok\n")

        await send(server.url, prefix, [Slow(n, seconds=1.0) for n in range(10, 14)])
        await wait_for(lambda: all((tmp_path / f"started-{n}").exists() for n in range(10, 14)))
        parent.proc.send_signal(signal.SIGTERM)
    text = parent.text()
    assert parent.proc.returncode == 0, text
    assert sorted(done(tmp_path)) == list(range(14))
    assert "received SIGTERM: stopping 2 workers gracefully" in text
    assert text.count("shutting down: draining in-flight jobs") == 2
    assert "cancelling" not in text and "Traceback" not in text
    keys = PartitionKeys(prefix, "slow")
    summary: Any = await redis.xpending(keys.stream, GROUP)
    assert int(summary.pending) == 0


async def test_a_second_signal_cancels_the_running_jobs(
    tmp_path: Path, server: Server, prefix: str, redis: Any
) -> None:
    """SIGINT twice to the parent: every worker cancels its running jobs at once (they
    stay pending for redelivery) and the parent exits 0 long before the jobs' end."""
    write_project(tmp_path, server.url, prefix)
    async with running(tmp_path, "--workers", "2") as parent:
        await wait_for(lambda: len(parent.started()) == 2, timeout=30)
        await send(server.url, prefix, [Slow(n, seconds=30.0) for n in range(4)])
        await wait_for(lambda: len(runs(tmp_path, "started.txt")) == 4)
        start = trio.current_time()
        parent.proc.send_signal(signal.SIGINT)
        await wait_for(lambda: b"received SIGINT: stopping" in parent.log)
        parent.proc.send_signal(signal.SIGINT)
    text = parent.text()
    assert parent.proc.returncode == 0, text
    assert trio.current_time() - start < 10
    assert "received SIGINT again: cancelling" in text
    assert text.count("cancelling: running jobs are abandoned") == 2
    assert done(tmp_path) == []
    keys = PartitionKeys(prefix, "slow")
    summary: Any = await redis.xpending(keys.stream, GROUP)
    assert int(summary.pending) == 4


async def test_workers_that_cannot_drain_are_killed_at_the_deadline(
    tmp_path: Path, server: Server, prefix: str
) -> None:
    """A worker whose event loop is blocked ignores the stop; shutdown_grace + 5 s after
    the signal the parent kills it (SIGKILL to its process group) and exits 0."""
    write_project(tmp_path, server.url, prefix)
    config = tmp_path / "config.toml"
    config.write_text(config.read_text().replace("shutdown_grace = 5.0", "shutdown_grace = 0.0"))
    async with running(tmp_path, "--workers", "1") as parent:
        await wait_for(lambda: len(parent.started()) == 1, timeout=30)
        app = trioqueue.App("sender")

        @app.handler(queue="stuck")
        async def stuck(msg: Stuck) -> None:
            pass

        async with app.connect(server.url, prefix=prefix) as client:
            await client.send(Stuck(60.0))
        await wait_for(lambda: (tmp_path / "stuck").exists())
        (pid, _), start = parent.started()[0], trio.current_time()
        parent.proc.send_signal(signal.SIGTERM)
    assert parent.proc.returncode == 0, parent.text()
    assert 4.5 < trio.current_time() - start < 10
    assert "killed the workers still running at the stop's deadline" in parent.text()
    assert f"worker process {pid} did not stop in time: killing" in parent.text()
    assert not alive(pid)


async def test_a_killed_worker_is_restarted_and_its_jobs_reclaimed(
    tmp_path: Path, server: Server, prefix: str
) -> None:
    """SIGKILL of one worker: the parent logs it and starts another in its slot; the
    jobs the dead one held are reclaimed, so every job completes."""
    write_project(tmp_path, server.url, prefix)
    async with running(tmp_path, "--workers", "2") as parent:
        await wait_for(lambda: len(parent.started()) == 2, timeout=30)
        await send(server.url, prefix, [Slow(n, seconds=0.5) for n in range(40)])
        victim, member = parent.started()[1]

        def victim_holds_a_job() -> bool:
            started = {n for n, pid in runs(tmp_path, "started.txt") if pid == victim}
            return bool(started - {n for n, pid in runs(tmp_path, "done.txt") if pid == victim})

        # The other worker may take the first jobs: kill the victim once it runs one.
        await wait_for(victim_holds_a_job)
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: parent.started()[1][0] != victim, timeout=20)
        await wait_for(lambda: set(done(tmp_path)) == set(range(40)), timeout=30)
        parent.proc.send_signal(signal.SIGTERM)
    text = parent.text()
    assert parent.proc.returncode == 0, text
    held = {n for n, pid in runs(tmp_path, "started.txt") if pid == victim}
    held -= {n for n, pid in runs(tmp_path, "done.txt") if pid == victim}
    assert held, "the killed worker held no job: nothing was reclaimed"
    assert f"worker 1 (pid {victim}, member {member}) was killed by SIGKILL" in text
    assert "restarting it in" in text


async def test_killing_the_parent_leaves_no_worker(
    tmp_path: Path, server: Server, prefix: str
) -> None:
    """SIGKILL of the parent (set up by `[worker] workers`): its workers notice the
    closed link and exit within seconds."""
    write_project(tmp_path, server.url, prefix)
    (tmp_path / "config.toml").write_text(
        (tmp_path / "config.toml").read_text().replace("[worker]\n", "[worker]\nworkers = 2\n")
    )
    async with running(tmp_path) as parent:
        await wait_for(lambda: len(parent.started()) == 2, timeout=30)
        children = [pid for pid, _ in parent.started().values()]
        parent.proc.kill()
        await wait_for(lambda: not any(alive(pid) for pid in children), timeout=10)
    assert "parent supervisor" in parent.text()


async def test_a_bad_config_exits_1_before_any_worker_starts(
    tmp_path: Path, server: Server, prefix: str
) -> None:
    write_project(tmp_path, server.url, prefix, '[queues.slow]\nretries = "five"\n')
    start = trio.current_time()
    async with running(tmp_path, "--workers", "2") as parent:
        pass
    assert parent.proc.returncode == 1
    assert 'queues.slow.retries: expected an integer, got "five"' in parent.text()
    assert "starting: pid" not in parent.text()
    assert trio.current_time() - start < 10


async def test_an_error_only_a_worker_sees_stops_everything(
    tmp_path: Path, server: Server, prefix: str
) -> None:
    """An app that fails to import in worker 1 only: exit 1 at once, no restart loop."""
    write_project(tmp_path, server.url, prefix)
    (tmp_path / "broken").touch()
    async with running(tmp_path, "--workers", "2") as parent:
        pass
    text = parent.text()
    assert parent.proc.returncode == 1, text
    assert re.search(r"error: worker 1 \(pid \d+\) cannot run: app: cannot import", text), text
    assert "boom in worker 1 only" in text
    assert "restarting" not in text


async def test_a_crash_loop_stops_with_exit_1(tmp_path: Path, server: Server, prefix: str) -> None:
    """Workers that die at start are restarted with a backoff until 5 deaths within
    60 s, then the parent gives up with exit status 1."""
    write_project(tmp_path, server.url, prefix)
    (tmp_path / "crash").touch()
    async with running(tmp_path, "--workers", "2") as parent:
        pass
    text = parent.text()
    assert parent.proc.returncode == 1, text
    assert "exited with status 3" in text
    assert "restarting it in 0." in text
    assert "error: worker processes died 5 times within 60s" in text


@pytest.mark.parametrize("workers", ["2"])
async def test_burst_with_an_embedded_broker(tmp_path: Path, prefix: str, workers: str) -> None:
    """Without broker.url the parent runs the embedded broker and its workers use it;
    `--burst` drains, sums what the workers did and exits 0."""
    write_project(tmp_path, None, prefix)
    assert TRIOQUEUE is not None
    sent = await trio.run_process(
        [TRIOQUEUE, "send", "config.toml", "slow", '{"n": 1, "seconds": 0}', "-n", "30"],
        cwd=tmp_path,
        env=cli_env(),
        capture_stdout=True,
        capture_stderr=True,
    )
    assert sent.returncode == 0
    async with running(tmp_path, "--burst", "--workers", workers) as parent:
        pass
    text = parent.text()
    assert parent.proc.returncode == 0, text
    assert "embedded broker started" in text
    assert f"drained: 30 succeeded, 0 retried, 0 dead-lettered ({workers} workers)" in text
    assert len(done(tmp_path)) == 30
