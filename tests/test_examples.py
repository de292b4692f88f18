"""The examples in examples/, run with the commands their READMEs give, each in a copy
of its folder and against its own embedded broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent
TRIOQUEUE = shutil.which("trioqueue", path=str(BIN)) or shutil.which("trioqueue")
HYPERCORN = shutil.which("hypercorn", path=str(BIN)) or shutil.which("hypercorn")
PYTHON = sys.executable
# Files an example writes while it runs; a copy starts without them.
GENERATED = (".trioqueue", "__pycache__", "rows.db*", "reports.log", ".venv", ".nox")


def example_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRIOQUEUE_BROKER_URL", None)  # the examples use the embedded broker
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # rich must not wrap the lines the tests look for
    env["NO_COLOR"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Background:
    """A command that runs until stopped (a worker, a web server), in its own process
    group so that cleanup also reaches the embedded broker it may have started."""

    def __init__(self, args: list[str], cwd: Path, log: Path) -> None:
        self.args = args
        self.log_path = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=cwd,
                env=example_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, condition: str | Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until ``condition`` (text in the output, or a predicate) holds."""
        deadline = time.monotonic() + timeout
        while True:
            ok = condition in self.log() if isinstance(condition, str) else condition()
            if ok:
                return
            if self.proc.poll() is not None:
                pytest.fail(f"{self.args} exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {condition!r}; output:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for a clean exit; return the exit status."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.args} did not exit {timeout}s after {sig.name}:\n{self.log()}")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Example:
    """A copy of one example folder, and the processes started in it."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.dir = tmp_path / name
        shutil.copytree(EXAMPLES / name, self.dir, ignore=shutil.ignore_patterns(*GENERATED))
        self.tmp = tmp_path
        self.running: list[Background] = []

    def run(self, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run a command to completion (killing it and what it started on timeout)."""
        proc = subprocess.Popen(
            args,
            cwd=self.dir,
            env=example_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{args} did not finish within {timeout}s:\n{out}\n{err}")
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    def ok(self, *args: str, timeout: float = 20.0) -> str:
        """Run a command that must succeed; return its standard output."""
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def start(self, *args: str) -> Background:
        name = f"{Path(args[0]).name}-{len(self.running)}.log"
        bg = Background(list(args), self.dir, self.tmp / name)
        self.running.append(bg)
        return bg

    def start_worker(self, app_name: str) -> Background:
        worker = self.start(trioqueue(), "run", "config.toml")
        worker.wait_for(f"started: app {app_name}")
        return worker

    def stop_worker(self, worker: Background) -> str:
        """SIGTERM, as Ctrl-C would: the worker must drain and exit 0, cleanly."""
        status = worker.stop(signal.SIGTERM)
        log = worker.log()
        assert status == 0, log
        assert "received SIGTERM" in log
        assert re.search(r"worker \S+ stopped", log), log
        assert "Traceback" not in log, log
        assert not (self.dir / ".trioqueue" / "broker.url").exists(), "broker left running"
        return log

    def cleanup(self) -> None:
        for bg in reversed(self.running):
            bg.cleanup()


def trioqueue() -> str:
    assert TRIOQUEUE is not None, "the trioqueue console script is not installed"
    return TRIOQUEUE


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Callable[[str], Example]]:
    made: list[Example] = []

    def make(name: str) -> Example:
        ex = Example(name, tmp_path)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.cleanup()


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ----------------------------------------------------------------- welcome_email


def test_welcome_email(example: Callable[[str], Example]) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("hypercorn")
    assert HYPERCORN is not None
    ex = example("welcome_email")
    worker = ex.start_worker("welcome_email")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = ex.start(HYPERCORN, "--worker-class", "trio", "--bind", f"127.0.0.1:{port}", "web:api")
    web.wait_for(f"Running on {base}")

    status, reply = http("POST", f"{base}/signup", {"email": "ada@example.org", "name": "Ada"})
    assert status == 202, reply
    job_id = reply["job_id"]
    assert reply["queue"] == "emails"
    worker.wait_for(f"welcome email sent to Ada <ada@example.org> (job {job_id})")

    out = ex.ok(trioqueue(), "status", "config.toml", "--job", job_id)
    assert re.search(r"^state\s+succeeded$", out, re.M), out
    assert http("GET", f"{base}/jobs/{job_id}") == (
        200,
        {"job_id": job_id, "state": "succeeded", "attempts": 1},
    )
    status, reply = http("POST", f"{base}/signup", {"email": "ada@example.org"})
    assert status == 422, reply

    assert web.stop(signal.SIGTERM) == 0, web.log()
    assert "Traceback" not in web.log(), web.log()
    ex.stop_worker(worker)


# ----------------------------------------------------------------- word_count


def test_word_count_trigger_burst_result(example: Callable[[str], Example]) -> None:
    ex = example("word_count")
    out = ex.ok(PYTHON, "wordcount.py", "trigger", "samples/queues.txt", "samples/trio.txt")
    ids = {path: job for job, path in (line.split("\t") for line in out.splitlines())}
    assert set(ids) == {"samples/queues.txt", "samples/trio.txt"}, out

    done = ex.run(trioqueue(), "run", "config.toml", "--burst")
    assert done.returncode == 0, done.stderr
    assert "drained: 2 succeeded, 0 retried, 0 dead-lettered" in done.stderr

    q, t = ids["samples/queues.txt"], ids["samples/trio.txt"]
    assert ex.ok(PYTHON, "wordcount.py", "result", "--jobid", q).strip() == "33"
    assert ex.ok(PYTHON, "wordcount.py", "result", "--jobid", t).strip() == "13"
    assert ex.ok(trioqueue(), "result", "config.toml", q).strip() == "33"

    unknown = ex.run(PYTHON, "wordcount.py", "result", "--jobid", "no-such-job")
    assert unknown.returncode == 1
    assert "no job no-such-job" in unknown.stdout


def test_word_count_with_a_running_worker(example: Callable[[str], Example]) -> None:
    ex = example("word_count")
    worker = ex.start_worker("word_count")
    out = ex.ok(PYTHON, "wordcount.py", "trigger", "samples/trio.txt")
    job_id = out.split("\t")[0]
    # `result` waits for the worker's count.
    assert ex.ok(PYTHON, "wordcount.py", "result", "--jobid", job_id).strip() == "13"
    log = ex.stop_worker(worker)
    assert f"trio.txt: 13 words (job {job_id})" in log


# ----------------------------------------------------------------- batch_save


def check_saved(ex: Example, n: int) -> None:
    out = ex.ok(PYTHON, "count.py")
    pattern = r"(\d+) rows in rows\.db, saved in (\d+) batches \(largest: (\d+)\)\n"
    match = re.fullmatch(pattern, out)
    assert match, out
    rows, batches, largest = map(int, match.groups())
    assert rows == n, out
    assert batches < n // 20 and largest <= 200, out  # saved in bulk, not row by row


def test_batch_save(example: Callable[[str], Example]) -> None:
    ex = example("batch_save")
    assert ex.ok(PYTHON, "produce.py", "1000") == "sent 1000 rows to queue rows\n"
    done = ex.run(trioqueue(), "run", "config.toml", "--burst")
    assert done.returncode == 0, done.stderr
    assert "drained: 1000 succeeded, 0 retried, 0 dead-lettered" in done.stderr, done.stderr
    assert "saved 200 rows in one executemany" in done.stderr
    check_saved(ex, 1000)


def test_batch_save_in_a_process_pool(example: Callable[[str], Example]) -> None:
    """The README's variant: the same decorated handler with run_in="process"."""
    ex = example("batch_save")
    tasks = ex.dir / "tasks.py"
    old = "batch_size=200, flush_interval=0.5)"
    assert old in tasks.read_text()
    tasks.write_text(tasks.read_text().replace(old, old[:-1] + ', run_in="process")'))
    ex.ok(PYTHON, "produce.py", "300")
    done = ex.run(trioqueue(), "run", "config.toml", "--burst")
    assert done.returncode == 0, done.stderr
    assert "drained: 300 succeeded, 0 retried, 0 dead-lettered" in done.stderr, done.stderr
    check_saved(ex, 300)


def test_batch_save_flushes_a_small_batch(example: Callable[[str], Example]) -> None:
    """With a worker running, fewer rows than a batch are saved after flush_interval."""
    ex = example("batch_save")
    worker = ex.start_worker("batch_save")
    ex.ok(PYTHON, "produce.py", "50")
    worker.wait_for("saved 50 rows in one executemany")
    ex.stop_worker(worker)
    check_saved(ex, 50)


# ----------------------------------------------------------------- cron_report


def test_cron_report(example: Callable[[str], Example]) -> None:
    ex = example("cron_report")
    assert "ok: config valid" in ex.ok(trioqueue(), "check", "config.toml")
    report = ex.dir / "reports.log"

    def lines(title: str) -> list[str]:
        text = report.read_text() if report.exists() else ""
        return [line for line in text.splitlines() if f" {title}: " in line]

    worker = ex.start_worker("cron_report")
    # Each schedule fires for its latest tick at start: the two @app.cron functions
    # and the [[schedules]] entry of config.toml.
    worker.wait_for(lambda: all(lines(t) for t in ("minutely", "every 5s", "from config.toml")))
    assert "(job cron:from-config:" in lines("from config.toml")[0]
    # ...and then on every tick.
    worker.wait_for(lambda: len(lines("every 5s")) >= 2, timeout=10)
    ex.stop_worker(worker)
    ids = re.findall(r"\(job (\S+)\)", report.read_text())
    assert len(ids) == len(set(ids)), "a tick was written twice"
