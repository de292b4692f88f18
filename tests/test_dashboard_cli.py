"""``trioqueue dashboard``: what it refuses before it serves, and that it serves."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import Server, free_port
from trioqueue._cli import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config_file(tmp_path: Path, server: Server, prefix: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'app = "tests.dashboard_app:app"\n[broker]\nurl = "{server.url}"\nprefix = "{prefix}"\n',
        encoding="utf-8",
    )
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"TRIOQUEUE_DASHBOARD_TOKEN": ""})
    return result.exit_code, result.output


def test_dashboard_refuses_a_public_address_without_a_token(config_file: Path) -> None:
    """Binding anywhere but loopback without a token exits 1 and says how to fix it."""
    code, output = run("dashboard", str(config_file), "--host", "0.0.0.0")
    assert code == 1
    assert "refusing to serve the dashboard on 0.0.0.0 without a token" in output
    assert "--token" in output


def test_dashboard_refuses_a_short_token(config_file: Path) -> None:
    """A token under 16 characters is refused before anything listens."""
    code, output = run("dashboard", str(config_file), "--token", "short")
    assert code == 1
    assert "at least 16 characters" in output


def test_dashboard_says_how_to_install_its_extra(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without starlette/hypercorn, the error names the extra to install."""
    monkeypatch.setitem(sys.modules, "hypercorn.trio", None)
    code, output = run("dashboard", str(config_file))
    assert code == 1
    assert "pip install 'trioqueue[dashboard]'" in output


def test_dashboard_command_serves_until_terminated(config_file: Path) -> None:
    """The real command listens on the port it is given and answers /api/status."""
    port = free_port()
    exe = Path(sys.executable).parent / "trioqueue"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOQUEUE_")}
    proc = subprocess.Popen(
        [str(exe), "dashboard", str(config_file), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status") as r:
                    assert b'"work"' in r.read()
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
