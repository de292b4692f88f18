"""The parent supervisor of ``trioqueue run --workers N``: N worker processes.

    Parent.run                     the broker URL is the caller's (it owns the
    │                              embedded broker when there is one)
    ├── signal listener            1st SIGINT/SIGTERM: ``stop`` to every child;
    │                              2nd: ``cancel`` to every child
    ├── metrics server             [metrics] port only: the children's figures,
    │                              summed (``_metrics.py``)
    └── kill scope                 deadline set at the stop: shutdown_grace + 5 s
        └── slots nursery
            └── slot 0..N-1        one child at a time: ``trio.run_process`` of
                                   ``python -m trioqueue run CONFIG --parent-fd FD``,
                                   in a process group of its own; restarted when
                                   it dies (``_restart.py``)

Each child is a normal member with its own member id; the parent never talks to the
broker. Children live in their own process group, so a Ctrl-C in a terminal reaches
the parent alone, which passes it on once; the parent's signals reach them over the
link (``_link.py``), whose end of file also stops a child whose parent was killed.

Cancellation: a stop ends the restarts and asks each child to drain; the slots end
as their children exit. Children still running at the kill scope's deadline (or
when the parent is cancelled) are killed with their whole process group (SIGKILL),
their handler processes included; their jobs stay pending and are reclaimed.

Error handling: a child that dies is restarted after a backoff, its exit status or
signal logged. A child reporting a fatal error (a bad config, an app that does not
import, refused credentials) or a crash loop (``CRASH_LIMIT`` crashes within
``CRASH_WINDOW`` seconds) stops every child, and ``run`` raises ``WorkersFailed``.

Resource handling: every child and its socket is gone when ``run`` returns.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from trioqueue._config import Config
from trioqueue._config_load import URL_ENV
from trioqueue._parent._link import read_reports
from trioqueue._parent._metrics import ParentMetrics
from trioqueue._parent._restart import Restarts, SlotBackoff
from trioqueue._worker._metrics_server import MetricsServer

__all__ = ["INDEX_ENV", "KILL_AFTER", "Child", "Parent", "WorkersFailed"]

log = logging.getLogger("trioqueue.parent")

INDEX_ENV = "TRIOQUEUE_WORKER_INDEX"
# Seconds past shutdown_grace (or past a second signal) before children are killed.
KILL_AFTER = 5.0


class WorkersFailed(Exception):
    """The parent stopped every worker because one cannot run (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@attrs.define(eq=False)
class Child:
    """One running worker process, as the parent sees it."""

    index: int
    proc: trio.Process
    sock: socket.socket  # the parent's end of the link
    started_at: float
    member: str | None = None
    metrics_port: int | None = None
    fatal: str | None = None


class Parent:
    """Runs ``workers`` worker processes until stopped (or, with ``burst``, drained).

    ``child_args(index, fd)`` is the command line of worker ``index`` whose link is
    file descriptor ``fd``.
    """

    def __init__(
        self,
        config: Config,
        child_args: Callable[[int, int], list[str]],
        *,
        workers: int,
        burst: bool = False,
        metrics_port: int | None = None,
    ) -> None:
        self.config = config
        self.workers = workers
        self.burst = burst
        self.restarts = Restarts()
        self.children: dict[int, Child] = {}
        self.drained: dict[str, int] = {"succeeded": 0, "retried": 0, "dead": 0}
        self._child_args = child_args
        self._metrics_port = metrics_port
        self._stop = trio.Event()
        self._failure: str | None = None
        self._kill_scope = trio.CancelScope()
        self._env: Mapping[str, str] = os.environ

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for (no more restarts)."""
        return self._stop.is_set()

    async def run(
        self, url: str, *, task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the children against the broker at ``url``; report the metrics port
        (None without one) once every child is spawned."""
        self._env = {**os.environ, URL_ENV: url}
        async with trio.open_nursery() as nursery:
            await nursery.start(self._listen_for_signals)
            port = None
            if self._metrics_port is not None:
                port = await nursery.start(self._serve_metrics)
            with self._kill_scope:
                async with trio.open_nursery() as slots:
                    for index in range(self.workers):
                        slots.start_soon(self._slot, index)
                    task_status.started(port)
            if self._kill_scope.cancelled_caught:
                log.warning("killed the workers still running at the stop's deadline")
            nursery.cancel_scope.cancel()
        if self._failure is not None:
            raise WorkersFailed(self._failure)

    def stop(self) -> None:
        """Ask every child to drain; kill what still runs after ``shutdown_grace`` + 5 s."""
        if self.stopping:
            return
        self._stop.set()
        self._kill_scope.deadline = (
            trio.current_time() + self.config.worker.shutdown_grace + KILL_AFTER
        )
        self._command_all(b"stop\n")

    def cancel(self) -> None:
        """Ask every child to stop at once; kill what still runs 5 s later."""
        self.stop()
        self._kill_scope.deadline = min(self._kill_scope.deadline, trio.current_time() + KILL_AFTER)
        self._command_all(b"cancel\n")

    def _command_all(self, command: bytes) -> None:
        for child in self.children.values():
            # A few bytes into the socket buffer: never blocks. OSError: it is exiting.
            with contextlib.suppress(OSError):
                child.sock.send(command)

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
            log.error("%s: stopping every worker", reason)
        self.stop()

    async def _listen_for_signals(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.stopping:
                    log.info(
                        "received %s: stopping %d workers gracefully (send again to "
                        "cancel at once)",
                        name,
                        len(self.children),
                    )
                    self.stop()
                else:
                    log.warning("received %s again: cancelling the workers' running jobs", name)
                    self.cancel()

    async def _serve_metrics(self, *, task_status: trio.TaskStatus[int]) -> None:
        m = self.config.metrics
        metrics = ParentMetrics(self, host=m.host)
        assert self._metrics_port is not None
        server = MetricsServer(
            metrics.registry,
            metrics.health,
            host=m.host,
            port=self._metrics_port,
            before=metrics.refresh,
        )
        await server.run(task_status=task_status)

    async def _slot(self, index: int) -> None:
        backoff = SlotBackoff()
        while not self._stop.is_set():
            child, status = await self._run_child(index)
            ran_for = trio.current_time() - child.started_at
            what = _describe(child, status)
            if self._stop.is_set():
                log.info("worker %d %s", index, what)
                return
            if child.fatal is not None:
                self._fail(f"worker {index} (pid {child.proc.pid}) cannot run: {child.fatal}")
                return
            if self.burst and status == 0:
                log.info("worker %d drained its queues and %s", index, what)
                return
            if self.restarts.crashed(trio.current_time()):
                self._fail(
                    f"worker processes died {self.restarts.limit} times within "
                    f"{self.restarts.window:.0f}s (last: worker {index} {what})"
                )
                return
            delay = backoff.next_delay(ran_for=ran_for, rand=random.random())
            log.warning(
                "worker %d %s after %.1fs; restarting it in %.1fs", index, what, ran_for, delay
            )
            with trio.move_on_after(delay):
                await self._stop.wait()

    async def _run_child(self, index: int) -> tuple[Child, int]:
        """Start worker ``index``, follow its reports until it exits; its exit status."""
        ours, theirs = socket.socketpair()
        with ours, theirs:
            fd = theirs.fileno()
            run = functools.partial(
                trio.run_process,
                self._child_args(index, fd),
                check=False,
                stdin=subprocess.DEVNULL,
                pass_fds=(fd,),
                env={**self._env, INDEX_ENV: str(index)},
                # A process group of its own: a terminal's Ctrl-C reaches the parent
                # only, and a kill reaches the child's handler processes too.
                process_group=0,
                deliver_cancel=_kill_group,
            )
            sock = trio.socket.from_stdlib_socket(ours)
            async with trio.open_nursery() as nursery:
                proc: trio.Process = await nursery.start(run)
                theirs.close()  # only the child holds it now: its exit ends the reports
                child = self.children[index] = Child(index, proc, ours, trio.current_time())
                try:
                    log.info("worker %d starting: pid %d", index, proc.pid)
                    if self.stopping:
                        # A stop that came while it was being spawned.
                        self._command_all(b"stop\n")
                    async for report in read_reports(sock):
                        self._on_report(child, report)
                    await proc.wait()
                finally:
                    del self.children[index]
        assert proc.returncode is not None
        return child, proc.returncode

    def _on_report(self, child: Child, report: dict[str, Any]) -> None:
        event = report.get("event")
        if event == "started":
            child.member = str(report.get("member"))
            port = report.get("metrics_port")
            child.metrics_port = port if isinstance(port, int) else None
            log.info(
                "worker %d started: pid %d, member %s", child.index, child.proc.pid, child.member
            )
        elif event == "fatal":
            child.fatal = str(report.get("message", "unknown error")).splitlines()[0]
        elif event == "drained":
            for key in self.drained:
                value = report.get(key, 0)
                self.drained[key] += value if isinstance(value, int) else 0


def _describe(child: Child, status: int) -> str:
    pid = f"(pid {child.proc.pid}{f', member {child.member}' if child.member else ''})"
    if status < 0:
        return f"{pid} was killed by {signal.Signals(-status).name}"
    return f"{pid} exited with status {status}"


async def _kill_group(proc: trio.Process) -> None:
    """The cancellation of a child: SIGKILL to its process group, then reap it."""
    log.warning("worker process %d did not stop in time: killing its process group", proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with trio.CancelScope(shield=True):
        await proc.wait()
