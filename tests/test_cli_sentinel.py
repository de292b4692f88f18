"""The command line on a Sentinel URL, and ``trioqueue send`` with replica-acknowledged
sends (``[broker] wait_replicas``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from tests.sentinel_group import SentinelGroup
from tests.test_cli import TASKS, TRIOQUEUE, WORKER, Project, cli_env, output

pytestmark = pytest.mark.cluster


def sentinel_project(tmp_path: Path, prefix: str, url: str, broker: str = "") -> Project:
    (tmp_path / "tasks.py").write_text(TASKS, encoding="utf-8")
    p = Project(tmp_path, prefix)
    p.write_config(
        f'app = "tasks:app"\n[broker]\nurl = "{url}"\nprefix = "{prefix}"\n{broker}\n{WORKER}'
    )
    return p


async def test_send_waits_for_replicas_and_exits_1_when_not_replicated(
    sentinel: SentinelGroup, tmp_path: Path, prefix: str
) -> None:
    project = sentinel_project(
        tmp_path, prefix, sentinel.url, "wait_replicas = 1\nwait_timeout = 0.3"
    )
    ok = await project.cli("send", "config.toml", "greet", '{"name": "ada"}')
    assert ok.returncode == 0, output(ok)
    replica = sentinel.replica()
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        short = await project.cli("send", "config.toml", "greet", '{"name": "bob"}')
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    assert short.returncode == 1
    text = output(short)
    assert "not confirmed within 0.3s: 0 of 1 replicas acknowledged" in text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text
    burst = await project.cli("run", "config.toml", "--burst")
    assert burst.returncode == 0, output(burst)
    # The unconfirmed send was kept by the primary all along: both ran.
    assert sorted(name for _, name, _ in project.greeted()) == ["ada", "bob"]


async def test_every_command_takes_a_sentinel_url_from_the_environment(
    sentinel: SentinelGroup, tmp_path: Path, prefix: str
) -> None:
    project = sentinel_project(tmp_path, prefix, "redis://127.0.0.1:1/0")
    env = {**cli_env(), "TRIOQUEUE_BROKER_URL": sentinel.url}
    assert TRIOQUEUE is not None

    async def cli(*args: str) -> str:
        with trio.fail_after(30):
            proc = await trio.run_process(
                [TRIOQUEUE, *args], cwd=tmp_path, env=env, capture_stdout=True,
                capture_stderr=True, check=False,
            )  # fmt: skip
        assert proc.returncode == 0, output(proc)
        return output(proc)

    await cli("check", "config.toml")
    await cli("send", "config.toml", "greet", '{"name": "eve"}')
    assert "greet" in await cli("status", "config.toml")
    await cli("run", "config.toml", "--burst")
    assert [name for _, name, _ in project.greeted()] == ["eve"]
