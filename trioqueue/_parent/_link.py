"""The link between the parent supervisor and one worker process: a socket pair.

The parent makes a ``socket.socketpair()`` per child and hands the child its end as
an inherited file descriptor (``run --parent-fd N``, an internal option). Over it:

- the child reports, one JSON object per line: ``{"event": "started", "member":
  ..., "metrics_port": ...}`` once its consumers are attached; ``{"event": "fatal",
  "message": ...}`` when it stops on an error no restart can fix (a bad config, an
  app that does not import, a broker refusing our credentials); ``{"event":
  "drained", "succeeded": ..., "retried": ..., "dead": ...}`` at the end of a burst;
- the parent commands, one word per line: ``stop`` (drain, like a first SIGTERM)
  and ``cancel`` (stop at once, like a second);
- end of file tells the child that its parent is gone, however it died: the kernel
  closes a dead process's sockets, SIGKILL included. The child then stops at once
  (its running jobs stay pending and are reclaimed) and, should stopping hang, an
  ``alarm`` kills it ``PARENT_GONE_GRACE`` seconds later.

Why a socket, not signals and ``PR_SET_PDEATHSIG``: Trio starts processes from a
worker thread, and the death signal fires when the *thread* that forked exits, which
Trio's thread cache does after a few idle seconds; and commands over the socket
count once even when a service manager signals every process of the group as well
as the parent (systemd's default ``KillMode=control-group``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio

__all__ = ["PARENT_GONE_GRACE", "ParentLink", "read_reports"]

log = logging.getLogger("trioqueue.worker")

# Seconds a worker whose parent died has to stop before SIGALRM ends it.
PARENT_GONE_GRACE = 5


class ParentLink:
    """The child's end of the link: reports up, commands and the parent's death down.

    Attributes:
        parent_id: ``host:pid`` of the parent supervisor (shown by ``status``).
        index: the child's slot, 0 to N-1.
    """

    def __init__(self, fd: int, index: int) -> None:
        self._sock = socket.socket(fileno=fd)
        # Handler processes (run_in="process") must not hold the parent's link open.
        self._sock.set_inheritable(False)
        self.parent_id = f"{socket.gethostname()}:{os.getppid()}"
        self.index = index

    def report(self, event: str, **fields: Any) -> None:
        """Send one report to the parent (dropped if the parent is gone)."""
        line = orjson.dumps({"event": event, **fields}) + b"\n"
        # A few hundred bytes into an empty socket buffer: never blocks.
        with contextlib.suppress(OSError):
            self._sock.send(line)

    async def commands(self) -> AsyncIterator[str]:
        """The parent's commands as they arrive; ends when the parent is gone."""
        sock = trio.socket.from_stdlib_socket(self._sock)
        async for line in _lines(sock):
            yield line.decode("ascii", "replace").strip()

    def parent_gone(self) -> None:
        """Arm the last resort: SIGALRM (default action: exit) in a few seconds."""
        log.warning(
            "parent supervisor %s is gone: stopping at once (running jobs will be redelivered)",
            self.parent_id,
        )
        signal.alarm(PARENT_GONE_GRACE)


async def _lines(sock: trio.socket.SocketType) -> AsyncIterator[bytes]:
    buf = b""
    while True:
        try:
            data = await sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            return
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line


async def read_reports(sock: trio.socket.SocketType) -> AsyncIterator[dict[str, Any]]:
    """The parent's side: a child's reports until it closes its end (it exited)."""
    async for line in _lines(sock):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("worker process sent an unreadable report: %r", line[:200])
            continue
        if isinstance(doc, dict):
            yield doc
