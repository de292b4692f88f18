"""The embedded broker: started on demand in the config's directory, stopped afterwards."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

import trioqueue
from tests.conftest import wait_for
from tests.raw import connected
from tests.test_cli import TASKS, TRIOQUEUE, WORKER, cli_env, output
from trioqueue._connection import connected as trioqueue_connected
from trioqueue._embedded import MAX_SOCKET_PATH, embedded_broker


def write_project(directory: Path, *, data_dir: str | None = None) -> Path:
    """tasks.py and a config.toml without a broker URL; returns the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tasks.py").write_text(TASKS, encoding="utf-8")
    broker = 'prefix = "emb"\n' + (f'data_dir = "{data_dir}"\n' if data_dir else "")
    config = directory / "config.toml"
    config.write_text(f'app = "tasks:app"\n[broker]\n{broker}{WORKER}', encoding="utf-8")
    return config


async def cli(directory: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert TRIOQUEUE is not None
    with trio.fail_after(60):
        return await trio.run_process(
            [TRIOQUEUE, *args],
            cwd=directory,
            env=cli_env(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def server_pids(data_dir: Path) -> list[int]:
    """Pids of every server started in ``data_dir``, from its log."""
    log = (data_dir / "valkey.log").read_text(errors="replace")
    return [int(p) for p in re.findall(r"\bpid=(\d+), just started", log)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # The pid exists: make sure it is still our server and not a reused pid.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"valkey-server" in cmdline or b"redis-server" in cmdline


def greeted(directory: Path) -> list[list[str]]:
    path = directory / "greeted.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def aof_text(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (data_dir / "appendonlydir").glob("*.aof"))


async def test_send_without_worker_then_burst(tmp_path: Path) -> None:
    """`send` starts the embedded broker for its own duration, the jobs persist in the
    append-only file, `run --burst` restarts the broker and runs them; no server is left."""
    config = write_project(tmp_path)
    data_dir = tmp_path / ".trioqueue"

    sent = await cli(tmp_path, "send", str(config), "greet", '{"name": "emb"}', "-n", "3")
    assert sent.returncode == 0, output(sent)
    ids = sent.stdout.decode().split()
    assert len(ids) == 3
    assert (data_dir / "valkey.log").exists()
    assert not (data_dir / "broker.url").exists()
    [first] = server_pids(data_dir)
    assert not alive(first)
    persisted = aof_text(data_dir)
    assert all(job_id.encode() in persisted for job_id in ids)

    run = await cli(tmp_path, "run", str(config), "--burst")
    assert run.returncode == 0, output(run)
    assert "drained: 3 succeeded" in output(run)
    assert sorted(g[0] for g in greeted(tmp_path)) == sorted(ids)
    pids = server_pids(data_dir)
    assert len(pids) == 2 and pids[0] == first
    assert not any(alive(pid) for pid in pids)
    assert not (data_dir / "broker.url").exists()


async def test_send_joins_the_running_workers_broker(tmp_path: Path) -> None:
    """While a worker owns the embedded broker, `send` uses it instead of starting one;
    SIGTERM stops the worker and its server."""
    config = write_project(tmp_path)
    data_dir = tmp_path / ".trioqueue"
    assert TRIOQUEUE is not None
    proc = await trio.lowlevel.open_process(
        [TRIOQUEUE, "run", str(config)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = bytearray()

    async def read_log() -> None:
        assert proc.stderr is not None
        async for chunk in proc.stderr:
            log.extend(chunk)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log)
            await wait_for(lambda: b" started: app cli-test" in log, timeout=20)
            url = (data_dir / "broker.url").read_text()
            assert url.startswith("unix://")
            async with connected(url) as redis:
                info: Any = await redis.info("server")
            server_pid = int(info["process_id"])
            assert alive(server_pid)

            sent = await cli(tmp_path, "send", str(config), "greet", '{"name": "live"}')
            assert sent.returncode == 0, output(sent)
            [job_id] = sent.stdout.decode().split()
            await wait_for(lambda: [g[0] for g in greeted(tmp_path)] == [job_id])
            # Only the worker's server ever started: send joined it.
            assert server_pids(data_dir) == [server_pid]

            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, log.decode()
    assert not alive(server_pid)
    assert not (data_dir / "broker.url").exists()


async def test_unix_socket_is_private(tmp_path: Path) -> None:
    """With a short path the broker listens on a unix socket only its owner can use."""
    data_dir = tmp_path / "data"
    async with embedded_broker(data_dir) as url:
        assert url == f"unix://{data_dir / 'valkey.sock'}"
        mode = stat.S_IMODE(os.stat(data_dir / "valkey.sock").st_mode)
        assert mode & 0o077 == 0
        async with connected(url) as redis:
            info: Any = await redis.info("server")
            assert int(info["tcp_port"]) == 0
        pid = int(info["process_id"])
        assert (data_dir / "broker.url").read_text() == url
    assert not alive(pid)
    assert not (data_dir / "broker.url").exists()


async def test_long_socket_path_falls_back_to_tcp_with_password(tmp_path: Path) -> None:
    """A socket path over MAX_SOCKET_PATH chars makes the broker listen on loopback TCP
    with a random password, which never shows in the process list."""
    data_dir = tmp_path / ("d" * (MAX_SOCKET_PATH + 1))
    assert len(str(data_dir / "valkey.sock")) > MAX_SOCKET_PATH
    async with embedded_broker(data_dir) as url:
        m = re.fullmatch(r"redis://:([^@]+)@127\.0\.0\.1:(\d+)/0", url)
        assert m is not None, url
        password = m.group(1)
        assert len(password) >= 24
        assert not (data_dir / "valkey.sock").exists()
        async with connected(url) as redis:
            info: Any = await redis.info("server")
            pid = int(info["process_id"])
            bind: Any = await redis.config_get(["bind"])
        assert b"127.0.0.1" in bind[b"bind"]
        assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        anonymous = url.replace(f":{password}@", "")
        with pytest.raises(trioqueue.BrokerAuthError):
            async with trioqueue_connected(anonymous):
                pass
        url_file = data_dir / "broker.url"
        assert url_file.read_text() == url
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert not alive(pid)
    assert not (data_dir / "broker.url").exists()


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    """What one embedded server wrote, the next one started in the same directory has."""
    data_dir = tmp_path / "data"
    async with embedded_broker(data_dir) as url, connected(url) as redis:
        await redis.xadd("k", {"f": "v"})
    async with embedded_broker(data_dir) as url, connected(url) as redis:
        assert int(await redis.xlen("k")) == 1


async def test_broker_outlives_idle_helper_threads(tmp_path: Path) -> None:
    """The server keeps running past the idle timeout of Trio's helper threads (10 s):
    its death signal is tied to the thread that started it, which must be ours."""
    data_dir = tmp_path / "data"
    async with embedded_broker(data_dir) as url:
        async with connected(url) as redis:
            info: Any = await redis.info("server")
        pid = int(info["process_id"])
        await trio.sleep(11.5)
        assert alive(pid)
        async with connected(url) as redis:
            assert await redis.ping()
    assert not alive(pid)


def test_broker_dies_with_a_killed_owner(tmp_path: Path) -> None:
    """SIGKILL of the process that started the server takes the server down too, so the
    next owner of the data directory does not find a second server running."""
    data_dir = tmp_path / "data"
    script = (
        "import sys, trio\n"
        "from pathlib import Path\n"
        "from trioqueue._embedded import embedded_broker\n"
        "async def main():\n"
        "    async with embedded_broker(Path(sys.argv[1])):\n"
        "        print('ready', flush=True)\n"
        "        await trio.sleep_forever()\n"
        "trio.run(main)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(data_dir)], stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == b"ready"
        pid = int((data_dir / "valkey.pid").read_text())
        assert alive(pid)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
