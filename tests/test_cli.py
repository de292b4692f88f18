"""The `trioqueue` command line, run as the installed console script in a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio

import trioqueue
from tests.conftest import Server, free_port, wait_for
from trioqueue._keys import GROUP, PartitionKeys

TRIOQUEUE = shutil.which("trioqueue", path=str(Path(sys.executable).parent)) or shutil.which(
    "trioqueue"
)

TASKS = '''
"""The app under test: handlers append what they saw to files next to this module."""
import pathlib

import attrs
import orjson
import trio

import trioqueue

HERE = pathlib.Path(__file__).parent
app = trioqueue.App("cli-test")


@attrs.frozen
class Greet:
    name: str
    times: int = 1


@attrs.frozen
class Slow:
    n: int


@app.handler(queue="greet")
async def greet(msg: Greet) -> None:
    with (HERE / "greeted.txt").open("a") as f:
        f.write(f"{trioqueue.current_job().job_id} {msg.name} {msg.times}\\n")


@app.handler(queue="slow")
async def slow(msg: Slow) -> None:
    (HERE / f"started-{msg.n}").touch()
    await trio.sleep(0.5)
    (HERE / f"done-{msg.n}").touch()
'''

WORKER = """
[worker]
block = 0.1
heartbeat_interval = 0.2
heartbeat_ttl = 1.0
shutdown_grace = 5.0
"""


@attrs.frozen
class Slow:
    """Same wire name and queue as the app's Slow, to send from the test."""

    n: int


@attrs.define
class Project:
    """A tasks.py and config.toml in a directory of their own."""

    dir: Path
    prefix: str

    @property
    def config(self) -> Path:
        return self.dir / "config.toml"

    def write_config(self, text: str) -> None:
        self.config.write_text(text, encoding="utf-8")

    async def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
        assert TRIOQUEUE is not None, "the trioqueue console script is not installed"
        with trio.fail_after(timeout):
            return await trio.run_process(
                [TRIOQUEUE, *args],
                cwd=self.dir,
                env=cli_env(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    def greeted(self) -> list[list[str]]:
        path = self.dir / "greeted.txt"
        if not path.exists():
            return []
        return [line.split() for line in path.read_text().splitlines()]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRIOQUEUE_BROKER_URL", None)
    # Rich must not wrap the messages the tests look for.
    env["COLUMNS"] = "200"
    env["NO_COLOR"] = "1"
    return env


def output(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode() + proc.stderr.decode()


@pytest.fixture
def project(tmp_path: Path, server: Server, prefix: str) -> Project:
    (tmp_path / "tasks.py").write_text(TASKS, encoding="utf-8")
    p = Project(tmp_path, prefix)
    p.write_config(
        f'app = "tasks:app"\n[broker]\nurl = "{server.url}"\nprefix = "{prefix}"\n{WORKER}'
    )
    return p


def with_queue_table(project: Project, server: Server, table: str) -> None:
    project.write_config(
        f'app = "tasks:app"\n[broker]\nurl = "{server.url}"\nprefix = "{project.prefix}"\n'
        f"{WORKER}\n{table}\n"
    )


# ----------------------------------------------------------------------------- help


async def test_help_lists_commands(project: Project) -> None:
    """`--help` exits 0 and lists the commands; `run --help` documents its options."""
    top = await project.cli("--help")
    assert top.returncode == 0
    for command in ("run", "send", "check"):
        assert f" {command} " in top.stdout.decode()
    run = await project.cli("run", "--help")
    assert run.returncode == 0
    assert "--burst" in run.stdout.decode()
    assert "--queue" in run.stdout.decode()
    assert "SIGTERM" in run.stdout.decode()


# ----------------------------------------------------------------------------- check


async def test_check_ok(project: Project, server: Server, redis: Any) -> None:
    """`check` validates, imports and pings, prints the queues and stores their bounds."""
    with_queue_table(project, server, "[queues.greet]\nmax_length = 7\n")
    proc = await project.cli("check", "config.toml")
    assert proc.returncode == 0, output(proc)
    text = proc.stdout.decode()
    assert "ok" in text and "greet" in text and "slow" in text
    meta = PartitionKeys(project.prefix, "greet").meta
    assert await redis.hget(meta, "max_length") == b"7"


async def test_check_bad_config_names_key_path(project: Project, server: Server) -> None:
    """A config error exits 1 with the key path and no traceback, for check and run."""
    with_queue_table(project, server, '[queues.greet]\nretries = "five"\n')
    for command in ("check", "run"):
        proc = await project.cli(command, "config.toml")
        assert proc.returncode == 1
        text = output(proc)
        assert 'queues.greet.retries: expected an integer, got "five"' in text
        assert "Traceback" not in text


async def test_check_unknown_key_and_missing_file(project: Project, server: Server) -> None:
    """Typos and missing files are one clear line each, exit 1."""
    with_queue_table(project, server, "[queues.greet]\nretires = 3\n")
    proc = await project.cli("check", "config.toml")
    assert proc.returncode == 1
    assert "queues.greet.retires: unknown key" in output(proc)
    proc = await project.cli("check", "nope.toml")
    assert proc.returncode == 1
    assert "nope.toml: cannot read config file" in output(proc)
    assert "Traceback" not in output(proc)


async def test_check_queue_without_handler(project: Project, server: Server) -> None:
    """A [queues.X] table for a queue no handler uses is reported, with the known queues."""
    with_queue_table(project, server, "[queues.emails]\nretries = 1\n")
    proc = await project.cli("check", "config.toml")
    assert proc.returncode == 1
    assert "queues.emails: no handler is registered for this queue" in output(proc)
    assert "greet" in output(proc)


async def test_check_unreachable_broker(project: Project) -> None:
    """An unreachable broker is exit 1 with one line naming it."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    project.write_config(
        f'app = "tasks:app"\n[broker]\nurl = "{url}"\nconnect_timeout = 1.0\n{WORKER}'
    )
    proc = await project.cli("check", "config.toml")
    assert proc.returncode == 1
    assert f"cannot reach broker {url}" in output(proc)
    assert "Traceback" not in output(proc)


@pytest.mark.parametrize(
    ("app_ref", "module_text", "expected"),
    [
        ("missing_module_xyz:app", None, 'app: cannot import module "missing_module_xyz"'),
        ("broken:app", "raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("tasks:nothing", None, 'app: "tasks:nothing" is NoneType, expected a trioqueue.App'),
        ("tasks:HERE", None, 'app: "tasks:HERE" is PosixPath, expected a trioqueue.App'),
    ],
)
async def test_bad_app_reference(
    project: Project, server: Server, app_ref: str, module_text: str | None, expected: str
) -> None:
    """An app that cannot be imported or is not an App exits 1 saying why, no traceback."""
    if module_text is not None:
        (project.dir / f"{app_ref.split(':')[0]}.py").write_text(module_text)
    project.write_config(
        f'app = "{app_ref}"\n[broker]\nurl = "{server.url}"\nprefix = "{project.prefix}"\n'
    )
    proc = await project.cli("check", "config.toml")
    assert proc.returncode == 1
    assert expected in output(proc)
    assert "Traceback" not in output(proc)


# ----------------------------------------------------------------------------- send / run


async def test_send_then_burst_processes_them(project: Project, redis: Any) -> None:
    """`send -n 5` enqueues five jobs and prints their ids; `run --burst` runs them, exits 0."""
    sent = await project.cli(
        "send", "config.toml", "greet", '{"name": "ada", "times": 2}', "-n", "5"
    )
    assert sent.returncode == 0, output(sent)
    ids = sent.stdout.decode().split()
    assert len(ids) == len(set(ids)) == 5
    keys = PartitionKeys(project.prefix, "greet")
    assert await redis.xlen(keys.stream) == 5
    run = await project.cli("run", "config.toml", "--burst")
    assert run.returncode == 0, output(run)
    assert "drained: 5 succeeded" in output(run)
    greeted = project.greeted()
    assert sorted(g[0] for g in greeted) == sorted(ids)
    assert all(g[1:] == ["ada", "2"] for g in greeted)
    assert await redis.xlen(keys.stream) == 0


async def test_burst_on_empty_queues_exits_at_once(project: Project) -> None:
    """`run --burst` with nothing to do exits 0 quickly."""
    start = trio.current_time()
    run = await project.cli("run", "config.toml", "--burst")
    assert run.returncode == 0, output(run)
    assert "drained: 0 succeeded" in output(run)
    assert trio.current_time() - start < 10


@pytest.mark.parametrize("burst", [[], ["--burst"]])
async def test_run_with_an_unknown_queue_says_so(project: Project, burst: list[str]) -> None:
    """`run -q nosuch` (with or without --burst) exits 1 with one clear line."""
    run = await project.cli("run", "config.toml", "-q", "nosuch", *burst)
    assert run.returncode == 1, output(run)
    assert "no handler registered for queue(s) nosuch" in output(run)
    assert "Traceback" not in output(run)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["greet", '{"name": "ada", "times": "many"}'], "BODY does not match Greet"),
        (["greet", '{"times": 2}'], "BODY does not match Greet"),
        (["greet", "{not json"], "BODY is not valid JSON"),
        (["nowhere", '{"name": "ada"}'], "no handler for queue 'nowhere'"),
    ],
)
async def test_send_rejects_bad_bodies(
    project: Project, redis: Any, args: list[str], expected: str
) -> None:
    """A body that does not fit the handler's type, or no handler, exits 1; nothing is sent."""
    proc = await project.cli("send", "config.toml", *args)
    assert proc.returncode == 1
    assert expected in output(proc)
    assert "Traceback" not in output(proc)
    assert await redis.xlen(PartitionKeys(project.prefix, "greet").stream) == 0


async def test_send_names_the_bad_field(project: Project) -> None:
    """The mismatch message points at the offending field."""
    proc = await project.cli("send", "config.toml", "greet", '{"name": "ada", "times": "many"}')
    assert "body.times" in output(proc)
    proc = await project.cli("send", "config.toml", "greet", '{"times": 2}')
    assert "body.name" in output(proc)


async def test_send_to_full_queue(project: Project, server: Server, redis: Any) -> None:
    """Past max_length, `send` exits 1 saying the queue is full and adds nothing."""
    with_queue_table(project, server, "[queues.greet]\nmax_length = 2\n")
    too_many = await project.cli("send", "config.toml", "greet", '{"name": "a"}', "-n", "3")
    assert too_many.returncode == 1
    assert "is full" in output(too_many)
    stream = PartitionKeys(project.prefix, "greet").stream
    assert await redis.xlen(stream) == 0
    ok = await project.cli("send", "config.toml", "greet", '{"name": "a"}', "-n", "2")
    assert ok.returncode == 0, output(ok)
    full = await project.cli("send", "config.toml", "greet", '{"name": "b"}')
    assert full.returncode == 1
    assert "queue 'greet' is full" in output(full)
    assert "Traceback" not in output(full)
    assert await redis.xlen(stream) == 2


async def test_status_of_a_queue_never_consumed(project: Project) -> None:
    """`status` works before any worker has created the consumer group."""
    proc = await project.cli("status", "config.toml")
    assert proc.returncode == 0, output(proc)
    assert "greet" in output(proc)


async def test_run_then_sigterm_drains_and_exits_zero(
    project: Project, server: Server, redis: Any
) -> None:
    """SIGTERM during a job: the worker finishes it, acknowledges it and exits 0."""
    assert TRIOQUEUE is not None
    proc = await trio.lowlevel.open_process(
        [TRIOQUEUE, "run", "config.toml"],
        cwd=project.dir,
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
            await wait_for(lambda: b" started: app cli-test" in log, timeout=15)
            app = trioqueue.App("sender")

            @app.handler(queue="slow")
            async def slow(msg: Slow) -> None:
                pass

            async with app.connect(server.url, prefix=project.prefix) as client:
                await client.send(Slow(1))
            await wait_for(lambda: (project.dir / "started-1").exists())
            assert not (project.dir / "done-1").exists()
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.decode()
    assert proc.returncode == 0, text
    assert (project.dir / "done-1").exists()
    assert "received SIGTERM" in text
    assert "Traceback" not in text
    keys = PartitionKeys(project.prefix, "slow")
    assert await redis.xlen(keys.stream) == 0
    summary: Any = await redis.xpending(keys.stream, GROUP)
    assert int(summary.pending) == 0


# ----------------------------------------------------------------------------- pause


async def test_pause_and_resume_show_in_status(project: Project, redis: Any) -> None:
    """`pause` sets the queue's flag, `status` (table and JSON) shows it, `resume`
    clears it; each says when there was nothing to change."""
    paused = PartitionKeys(project.prefix, "greet").paused
    first = await project.cli("pause", "config.toml", "greet")
    assert (first.returncode, output(first).strip()) == (0, "queue greet paused")
    again = await project.cli("pause", "config.toml", "greet")
    assert "was paused already" in output(again)
    assert await redis.exists([paused]) == 1
    table = await project.cli("status", "config.toml")
    row = next(line for line in output(table).splitlines() if "greet" in line)
    assert "paused" in row
    doc = await project.cli("status", "config.toml", "--json")
    parsed = orjson.loads(doc.stdout)
    assert parsed["queues"]["greet"]["paused"] is True
    assert parsed["queues"]["slow"]["paused"] is False
    resumed = await project.cli("resume", "config.toml", "greet")
    assert (resumed.returncode, output(resumed).strip()) == (0, "queue greet resumed")
    assert await redis.exists([paused]) == 0
    assert "was not paused" in output(await project.cli("resume", "config.toml", "greet"))


async def test_pause_of_an_unknown_queue_says_so(project: Project) -> None:
    """One line naming the queues the app has, exit status 1."""
    proc = await project.cli("pause", "config.toml", "nope")
    assert proc.returncode == 1
    assert output(proc).strip() == "error: unknown queue 'nope': app 'cli-test' has greet, slow"


async def test_run_help_documents_metrics_port(project: Project) -> None:
    proc = await project.cli("run", "--help")
    assert "--metrics-port" in proc.stdout.decode()


async def test_run_with_metrics_port_serves_healthz_and_metrics(project: Project) -> None:
    """`run --metrics-port N` answers /healthz with 200 ok and /metrics with the job
    counters, then drains on SIGTERM as usual."""
    assert TRIOQUEUE is not None
    port = free_port()
    proc = await trio.lowlevel.open_process(
        [TRIOQUEUE, "run", "config.toml", "--metrics-port", str(port)],
        cwd=project.dir,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = bytearray()

    async def read_log() -> None:
        assert proc.stderr is not None
        async for chunk in proc.stderr:
            log.extend(chunk)

    async def get(path: str) -> str:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\n\r\n".encode())
            raw = bytearray()
            while chunk := await stream.receive_some(65536):
                raw += chunk
        return raw.decode()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log)
            # The metrics server starts beside the worker's loops, after this line.
            await wait_for(lambda: b" started: app cli-test" in log, timeout=15)
            await wait_for(lambda: b"serving metrics on" in log, timeout=15)
            health = await get("/healthz")
            assert health.startswith("HTTP/1.1 200 OK\r\n") and health.endswith("\r\n\r\nok\n")
            metrics = await get("/metrics")
            assert 'trioqueue_jobs_total{outcome="succeeded",queue="greet"} 0.0' in metrics
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, log.decode()
    assert f"serving metrics on http://127.0.0.1:{port}/metrics" in log.decode()
