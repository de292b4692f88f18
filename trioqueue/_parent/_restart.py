"""When to restart a worker process that died, and when to give up (pure).

A worker slot that dies is restarted after a jittered, capped exponential delay
(``RESTART_BACKOFF``: about 0.5 s, 1 s, 2 s, ... up to 30 s); a worker that ran for
``HEALTHY_AFTER`` seconds before dying starts the sequence again at 0.5 s. Crashes of
all slots count together: ``CRASH_LIMIT`` crashes within ``CRASH_WINDOW`` seconds
is a crash loop, and the parent stops everything with a non-zero exit rather than
restart a worker that can only die again (a broken deploy, a broker that refuses us).

The figures are those of ``../shared/SCALEOUT.md`` (5.5): a restart within a second
for a one-off crash, a few seconds to notice a loop.
"""

from __future__ import annotations

from collections import deque

import attrs

from trioqueue._config import Backoff

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW",
    "HEALTHY_AFTER",
    "RESTART_BACKOFF",
    "Restarts",
    "SlotBackoff",
]

RESTART_BACKOFF = Backoff(initial=0.5, factor=2.0, max=30.0, jitter=0.25)
# Seconds a worker must have run for its death to restart the backoff from the start.
HEALTHY_AFTER = 60.0
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0


@attrs.define
class SlotBackoff:
    """The restart delays of one worker slot.

    >>> slot = SlotBackoff()
    >>> slot.next_delay(ran_for=1.0, rand=0.5), slot.next_delay(ran_for=1.0, rand=0.5)
    (0.5, 1.0)
    """

    backoff: Backoff = RESTART_BACKOFF
    healthy_after: float = HEALTHY_AFTER
    attempt: int = 0

    def next_delay(self, *, ran_for: float, rand: float) -> float:
        """Seconds to wait before restarting a worker that died after ``ran_for``
        seconds; ``rand`` is uniform in [0, 1) (the jitter)."""
        if ran_for >= self.healthy_after:
            self.attempt = 0
        self.attempt += 1
        return self.backoff.delay(self.attempt, rand)


@attrs.define
class Restarts:
    """Crashes of every slot, to tell a crash loop from bad luck.

    Attributes:
        limit: crashes within ``window`` seconds that make a crash loop.
        window: seconds.
        total: crashes so far (the ``trioqueue_worker_restarts`` counter).
    """

    limit: int = CRASH_LIMIT
    window: float = CRASH_WINDOW
    total: int = 0
    _times: deque[float] = attrs.Factory(deque)

    def crashed(self, now: float) -> bool:
        """Record a crash at ``now`` (seconds, any monotonic clock); True if that makes
        ``limit`` crashes within ``window`` seconds."""
        self.total += 1
        self._times.append(now)
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times) >= self.limit
