"""Riding out broker outages: capped exponential backoff, logged once per outage.

``repeat`` is the one loop skeleton of the worker: every loop that talks to the
broker (heartbeat, scheduler, cron, control listener, partition watch, rebalance,
renewer, fetcher) is a step run by it.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from trioqueue._broker_errors import is_connection_error
from trioqueue._redact import redact

log = logging.getLogger("trioqueue.worker.outage")
T = TypeVar("T")


_BACKOFF_CAP = 2.0


def reconnect_delay(attempt: int, *, initial: float = 0.05, cap: float = _BACKOFF_CAP) -> float:
    """Full-jitter capped exponential backoff for reconnect attempt ``attempt`` (0-based)."""
    return float(random.uniform(0.5, 1.0) * min(cap, initial * 2.0**attempt))


class OutageTracker:
    """Shared by every loop of a supervisor so an outage is reported once, not per attempt.

    ``on_recover`` callbacks run when the broker answers again (e.g. to distrust
    peers' heartbeats for a while).
    """

    def __init__(self, url: str | None) -> None:
        self._url = url
        self._since: float | None = None
        # Wall-clock time the current outage began (for health reports).
        self.down_since: float | None = None
        self.outages = 0
        self._oom_logged = -math.inf
        self.on_recover: list[Callable[[], None]] = []

    @property
    def down(self) -> bool:
        """Whether the broker is unreachable right now (an outage has begun)."""
        return self._since is not None

    def failed(self, what: str, exc: BaseException) -> None:
        """Report a failed call: the first of an outage logs a warning."""
        if "OOM" in str(exc):
            # Out of memory is not an outage: acknowledgements still go through, so
            # calls would flip between failing and working. Say so once a minute.
            now = trio.current_time()
            if now - self._oom_logged >= 60.0:
                self._oom_logged = now
                log.warning(
                    "broker is out of memory (maxmemory reached): %s is refused until "
                    "jobs are drained; acknowledgements and heartbeats still work",
                    what,
                )
            return
        if self._since is None:
            self._since = trio.current_time()
            self.down_since = time.time()
            self.outages += 1
            log.warning(
                "broker unreachable (%s: %s); retrying with backoff",
                what,
                redact(f"{type(exc).__name__}: {exc}", self._url),
            )

    def succeeded(self) -> None:
        """Report a call that worked: it ends an outage (logged with its length)."""
        if self._since is not None:
            took = trio.current_time() - self._since
            self._since = self.down_since = None
            log.warning("broker reachable again after %.1fs; resuming", took)
            for callback in self.on_recover:
                callback()

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` until it succeeds, sleeping with backoff on connection errors.

        Other errors propagate. Safe only for idempotent operations.
        """
        attempt = 0
        while True:
            try:
                result = await fn()
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                self.failed(what, exc)
                await trio.sleep(reconnect_delay(attempt))
                attempt += 1
                continue
            self.succeeded()
            return result


async def repeat(
    what: str,
    step: Callable[[], Awaitable[float | None]],
    outage: OutageTracker | None,
    *,
    on_error: Callable[[Exception], Awaitable[float | None]] | None = None,
    max_wait: float = math.inf,
) -> None:
    """Run ``step`` until it returns None, sleeping the seconds it returns in between.

    Cancellation: only a step returning None (a consumer that drains) ends the loop
    on its own; every other loop ends when its scope is cancelled.

    Error handling: a connection error is reported to ``outage`` (``None``: not
    reported, for a loop whose failure says nothing about the broker, e.g. the
    pub/sub connection) and the step runs again after a backoff that grows with the
    failures of the current outage, never longer than ``max_wait``. Any other error
    goes to ``on_error``, which may re-raise it or return how long to wait before
    the next step (None: the same backoff); without ``on_error`` it propagates.
    """
    failures = 0
    failed_at = -math.inf
    while True:
        try:
            wait = await step()
        except Exception as exc:
            # A step that ran a while before failing (a pub/sub listener, say) starts
            # a new outage: its backoff starts from the bottom again.
            if trio.current_time() - failed_at > 2 * _BACKOFF_CAP:
                failures = 0
            failed_at = trio.current_time()
            backoff = min(reconnect_delay(failures), max_wait)
            failures += 1
            if not is_connection_error(exc):
                if on_error is None:
                    raise
                chosen = await on_error(exc)
                await trio.sleep(backoff if chosen is None else chosen)
                continue
            if outage is not None:
                outage.failed(what, exc)
            await trio.sleep(backoff)
            continue
        failures = 0
        if wait is None:
            return
        if wait > 0:  # a step that returns 0 checkpointed already: no extra yield
            await trio.sleep(wait)
