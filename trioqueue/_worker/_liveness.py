"""Whether a peer's missing heartbeat may be taken to mean it is dead.

Shared by the heartbeat loop, which feeds it, and by recovery, which asks it before
taking over a peer's jobs.
"""

from __future__ import annotations

import trio

from trioqueue._worker._outage import OutageTracker

__all__ = ["Liveness"]


class Liveness:
    """Trust in peers' heartbeats, and the event fired when our own heartbeat lapsed."""

    def __init__(
        self, outage: OutageTracker, *, heartbeat_interval: float, heartbeat_ttl: float
    ) -> None:
        self._outage = outage
        self._interval = heartbeat_interval
        self._ttl = heartbeat_ttl
        self._trusted_at = 0.0
        self._beat_sent: float | None = None
        self._lapse = trio.Event()
        self.lapses = 0
        # When our heartbeat was last renewed (trio clock; None: not yet).
        self.last_beat: float | None = None

    def peers_trusted(self) -> bool:
        """Whether a missing heartbeat of a peer may be taken to mean it is dead."""
        # While our own link is down, and for a TTL after it recovers, peers cannot
        # have renewed their heartbeats or leases either: a server that was down or
        # paused longer than the TTL comes back with every heartbeat expired.
        now = trio.current_time()
        if self._outage.down or now < self._trusted_at:
            return False
        # A heartbeat still waiting for its reply means our writes stall right now (a
        # CLIENT PAUSE, a busy server, a cut link) and so do everyone's: reads still
        # answer meanwhile and show live peers' heartbeats expiring.
        sent = self._beat_sent
        return sent is None or now - sent < self._interval / 2

    def distrust(self, seconds: float | None = None) -> None:
        """Trust no missing heartbeat for ``seconds`` (default: one TTL) from now."""
        wait = self._ttl if seconds is None else seconds
        self._trusted_at = trio.current_time() + wait

    def beat_sent(self) -> None:
        """A heartbeat is on its way: until its reply, our writes may be stalled."""
        self._beat_sent = trio.current_time()

    def beat_renewed(self) -> None:
        """Our heartbeat key was just written: it is current for a TTL from now."""
        self.last_beat = trio.current_time()

    def beat_done(self) -> None:
        """The heartbeat's reply arrived (or it failed)."""
        self._beat_sent = None

    def lapsed(self) -> None:
        """Our heartbeat had expired: wake everyone waiting in ``wait_lapse``."""
        self.lapses += 1
        self._lapse.set()
        self._lapse = trio.Event()

    async def wait_lapse(self) -> None:
        """Wait until our heartbeat is next found to have lapsed."""
        await self._lapse.wait()
