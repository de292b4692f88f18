"""A Sentinel set-up for tests: a primary, a replica and three sentinels on loopback.

Quorum 2, ``down-after-milliseconds 1000``, ``failover-timeout 3000``. The data
nodes and the sentinels have passwords of their own (``requirepass``), so every test
on the group also checks that the URL's two sets of credentials go where they belong.
One group is
shared by the Sentinel tests (``tests/test_sentinel.py``); a test that fails the
primary over, kills it or stops the replica leaves it to ``heal`` to bring the group
back to "one primary, one replica in sync, every sentinel agreeing" before the next
test, which is much faster than starting a new group. Every process is this group's
own child and is killed by PID at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import redis as redis_py

from tests.conftest import Server, free_port

SERVICE = "mymaster"
NODE_PASSWORD = "node-secret"
SENTINEL_PASSWORD = "sentinel-secret"
# What the Sentinel tests measured, printed at the end of the run (tests/conftest.py).
FIGURES: dict[str, str] = {}


def admin(port: int, password: str | None = NODE_PASSWORD) -> redis_py.Redis:
    """A plain redis-py client for looking at one node (or, with the sentinels'
    password, one sentinel)."""
    return redis_py.Redis(port=port, password=password, socket_timeout=2, socket_connect_timeout=2)


def sentinel_admin(port: int) -> redis_py.Redis:
    return admin(port, SENTINEL_PASSWORD)


def wait(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll ``predicate`` (errors count as false) until true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis_py.RedisError, OSError):
            if predicate():
                return
        time.sleep(0.05)
    raise RuntimeError(f"sentinel group: {what} not reached within {timeout}s")


@attrs.define
class SentinelGroup:
    binary: str
    base: Path
    nodes: list[Server] = attrs.Factory(list)
    sentinel_ports: list[int] = attrs.Factory(list)
    sentinels: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return (
            f"redis+sentinel://:{NODE_PASSWORD}@{hosts}/{SERVICE}"
            f"?sentinel_password={SENTINEL_PASSWORD}"
        )

    def start(self) -> None:
        for i in range(2):
            d = self.base / f"node{i}"
            d.mkdir()
            extra = ["--repl-diskless-sync-delay", "0", "--masterauth", NODE_PASSWORD]
            node = Server(self.binary, free_port(), d, extra=extra)
            self.nodes.append(node)
        self.nodes[1].extra += ["--replicaof", "127.0.0.1", str(self.nodes[0].port)]
        for node in self.nodes:
            self._start(node)
        self._wait_synced(self.nodes[0].port, self.nodes[1].port)
        for i in range(3):
            port = free_port()
            conf = self.base / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.base}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.nodes[0].port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel auth-pass {SERVICE} {NODE_PASSWORD}\n"
                f"requirepass {SENTINEL_PASSWORD}\n"
                f"sentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            )
            proc = subprocess.Popen(
                [self.binary, str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.sentinel_ports.append(port)
            self.sentinels.append(proc)
        self._wait_agreed()

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.kill()
            proc.wait()
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.suppress(OSError):
                    os.kill(node.proc.pid, signal.SIGCONT)
            node.stop()

    # ------------------------------------------------------------ the topology

    def primary(self) -> Server:
        """The node the sentinels name as primary now."""
        _host, port = sentinel_admin(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(
            SERVICE
        )
        return next(n for n in self.nodes if n.port == int(port))

    def replica(self) -> Server:
        primary = self.primary()
        return next(n for n in self.nodes if n is not primary)

    def failover(self) -> Server:
        """``SENTINEL FAILOVER``; return the new primary once promoted."""
        old = self.primary()
        sentinel_admin(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait(lambda: self.primary() is not old, "failover")
        new = self.primary()
        wait(lambda: admin(new.port).execute_command("ROLE")[0] == b"master", "promotion")
        return new

    def heal(self) -> None:
        """Back to one primary and one replica in sync, every sentinel agreeing."""
        for node in self.nodes:
            if node.proc is None:
                self._start(node)
            else:
                os.kill(node.proc.pid, signal.SIGCONT)
        wait(lambda: len({self._named(p) for p in self.sentinel_ports}) == 1, "agreement")
        primary = self.primary()
        replica = self.replica()
        role = admin(replica.port).execute_command("ROLE")
        if role[0] != b"slave" or int(role[2]) != primary.port:
            # A restarted or stale primary: make it a replica now rather than wait for
            # Sentinel's next 10-second check to do it.
            admin(replica.port).replicaof("127.0.0.1", primary.port)
        self._wait_synced(primary.port, replica.port)
        self._wait_agreed()

    @staticmethod
    def _start(node: Server) -> None:
        node.start()  # probed with a PING before it has a password
        admin(node.port, None).config_set("requirepass", NODE_PASSWORD)

    def _named(self, sentinel_port: int) -> int:
        addr = sentinel_admin(sentinel_port).sentinel_get_master_addr_by_name(SERVICE)
        return int(addr[1])

    def _wait_synced(self, primary: int, replica: int) -> None:
        def synced() -> bool:
            info = admin(replica).info("replication")
            return (
                info.get("master_port") == primary
                and info.get("master_link_status") == "up"
                and info.get("master_sync_in_progress") == 0
            )

        wait(synced, "replica in sync")

    def _wait_agreed(self) -> None:
        primary = self.nodes[0].port if not self.sentinel_ports else None

        def agreed() -> bool:
            ports = {self._named(p) for p in self.sentinel_ports}
            if len(ports) != 1 or (primary is not None and ports != {primary}):
                return False
            for p in self.sentinel_ports:
                state = sentinel_admin(p).sentinel_master(SERVICE)
                if state["num-other-sentinels"] != 2 or state["num-slaves"] < 1:
                    return False
                if "down" in state["flags"] or state.get("failover-state", "none") != "none":
                    return False
                replicas = sentinel_admin(p).sentinel_slaves(SERVICE)
                up = [r for r in replicas if r["flags"] == "slave"]
                if not up:
                    return False
            return True

        wait(agreed, "sentinels agreeing")
