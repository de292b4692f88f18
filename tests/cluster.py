"""A Redis Cluster on loopback for the tests: three primaries and three replicas.

Every node is a ``valkey-server`` (the embedded one) on a free port with an explicit
bus port, the cluster is created with the ``valkey-cli`` beside it, and the fixture
waits until every node reports ``cluster_state:ok`` with all six nodes known and
every replica in sync.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import attrs
import redis as redis_py

from tests.conftest import free_port


def _client(port: int) -> redis_py.Redis:
    return redis_py.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)


def _node_ok(port: int, nodes: int) -> bool:
    """The node sees the cluster ok with ``nodes`` nodes, and a replica is in sync."""
    client = _client(port)
    try:
        info = client.execute_command("CLUSTER INFO")
        if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < nodes:
            return False
        repl = client.info("replication")
        return repl.get("role") != "slave" or (
            repl.get("master_link_status") == "up" and not repl.get("master_sync_in_progress")
        )
    finally:
        client.close()


@attrs.define
class ClusterNode:
    """One node: its port, bus port and process."""

    port: int
    bus: int
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = attrs.Factory(list)

    def launch(self) -> None:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@attrs.define
class Cluster:
    """Six nodes (3 primaries + 3 replicas), started and created by ``start``."""

    binary: str
    data_dir: Path
    nodes: list[ClusterNode] = attrs.Factory(list)

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node as a seed."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for i in range(6):
            node = ClusterNode(free_port(), free_port())
            d = self.data_dir / f"n{i}"
            d.mkdir()
            args = [
                self.binary, "--port", str(node.port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(node.bus),
                "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", "1500", "--dir", str(d), "--save", "",
                "--appendonly", "yes", "--repl-diskless-sync-delay", "0",
                "--enable-debug-command", "local",
            ]  # fmt: skip
            node.args = args
            node.launch()
            self.nodes.append(node)
        for node in self.nodes:
            self._wait(lambda n=node: _client(n.port).ping(), 15, "start")
        cli = str(Path(self.binary).with_name("valkey-cli"))
        subprocess.run(
            [cli, "--cluster", "create", *(n.address for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node agrees the cluster is ok and replicas are in sync."""

        def ok() -> bool:
            live = [n for n in self.nodes if n.proc is not None]
            return all(_node_ok(n.port, len(live)) for n in live)

        self._wait(ok, timeout, "become ok")

    def _wait(self, check: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except (OSError, redis_py.RedisError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cluster did not {what} within {timeout}s")

    def kill(self, port: int) -> ClusterNode:
        """SIGKILL the node on ``port``."""
        node = next(n for n in self.nodes if n.port == port)
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait()
        node.proc = None
        return node

    def revive(self, node: ClusterNode) -> None:
        """Start a killed node again (it rejoins, as a replica if it was replaced)."""
        node.launch()
        self._wait(lambda: _client(node.port).ping(), 15, "restart")
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
                node.proc = None
