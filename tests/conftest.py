"""Test fixtures: a private valkey-server for the whole session, a key prefix per test."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

import trioqueue
from trioqueue._config_load import parse_config
from trioqueue._embedded import find_server_binary

if TYPE_CHECKING:
    from tests.sentinel_group import SentinelGroup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Server:
    """A private valkey-server process on a loopback port."""

    binary: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = attrs.Factory(list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--enable-debug-command", "local",
            *self.extra,
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
        raise RuntimeError(f"valkey-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL the server (data written so far is in the append-only file)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One private server for the whole session (embedded valkey, else redis on PATH)."""
    srv = Server(find_server_binary(), free_port(), tmp_path_factory.mktemp("valkey"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, for tests that kill or restart it."""
    srv = Server(find_server_binary(), free_port(), tmp_path / "valkey")
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One Redis Cluster (3 primaries, 3 replicas) shared by the cluster tests."""
    from tests.cluster import Cluster

    c = Cluster(find_server_binary(), tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"t{secrets.token_hex(4)}"


def make_config(url: str, prefix: str, **sections: dict[str, object]) -> trioqueue.Config:
    """A Config for tests: fast heartbeats and short blocking reads."""
    worker = {"block": 0.1, "heartbeat_interval": 0.2, "heartbeat_ttl": 1.0,
              "shutdown_grace": 5.0}  # fmt: skip
    worker.update(sections.pop("worker", {}))
    data = {"app": "tests:app", "broker": {"url": url, "prefix": prefix}, "worker": worker}
    data.update(sections)
    return parse_config(data)


@pytest.fixture
def config(server: Server, prefix: str) -> trioqueue.Config:
    return make_config(server.url, prefix)


@pytest.fixture(params=["single", pytest.param("cluster", marks=pytest.mark.cluster)])
def broker_url(request: pytest.FixtureRequest, server: Server) -> str:
    """The broker a broker-behaviour test runs on: the session server, then (marked
    ``cluster``) the session cluster."""
    if request.param == "cluster":
        return str(request.getfixturevalue("cluster").url)
    return server.url


@pytest.fixture
def any_config(broker_url: str, prefix: str) -> trioqueue.Config:
    """``config`` on each broker of ``broker_url``: one server, then a cluster."""
    return make_config(broker_url, prefix)


async def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Wait until ``predicate()`` (sync or async) is true; fail the test after ``timeout``."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()  # type: ignore[operator]
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await trio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@asynccontextmanager
async def running(
    app: trioqueue.App, config: trioqueue.Config
) -> AsyncIterator[trioqueue.Supervisor]:
    """A started supervisor; leaving the block shuts it down and waits for it to stop."""
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        try:
            yield sup
        finally:
            sup.shutdown()


@pytest.fixture
async def redis(server: Server) -> AsyncIterator[object]:
    """A raw coredis client on the session server, for inspecting keys."""
    from tests.raw import connected

    async with connected(server.url) as client:
        yield client


@pytest.fixture
async def broker(server: Server) -> AsyncIterator[object]:
    """trioqueue's own client on the session server, for calling its internals."""
    from trioqueue._connection import connected

    async with connected(server.url) as client:
        yield client


def has_binary(name: str) -> bool:
    return shutil.which(name) is not None


os.environ.pop("TRIOQUEUE_BROKER_URL", None)


@pytest.fixture(scope="session")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """One Sentinel group (primary, replica, three sentinels) for the whole session."""
    from tests.sentinel_group import SentinelGroup

    group = SentinelGroup(find_server_binary(), tmp_path_factory.mktemp("sentinel"))
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
def sentinel(sentinel_group: SentinelGroup) -> SentinelGroup:
    """The shared Sentinel group, healed: one primary, its replica in sync."""
    sentinel_group.heal()
    return sentinel_group


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.sentinel_group import FIGURES

    if FIGURES:
        terminalreporter.section("sentinel figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
