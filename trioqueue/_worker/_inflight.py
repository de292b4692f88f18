"""The jobs a consumer holds: running, finished but unacknowledged, and its free slots.

Every stage of a consumer (fetcher, recovery, runner, acker, renewer, key order)
reads and updates this one record; ``wait_change`` wakes whoever waits for a slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from trioqueue._envelope import Envelope

__all__ = ["Dispatch", "Entry", "InFlight", "Running"]

# A stream entry handed to a consumer: (entry id, fields, deliveries so far).
Entry = tuple[str, Mapping[Any, Any], int]
# Starts (or holds back) one entry: dispatch(entry id, fields, deliveries).
Dispatch = Callable[[str, Mapping[Any, Any], int], None]


@attrs.define(eq=False)
class Running:
    """One running job: its envelope, and the scope of the runner running it."""

    envelope: Envelope
    scope: trio.CancelScope | None = None
    fenced: bool = False
    cancelled: bool = False
    # Whether it is inside its handler: the only time interrupt() cancels it.
    in_handler: bool = False

    def interrupt(self) -> None:
        """Cancel the handler call if it is running (the runner's scope is shared
        with the jobs it runs next, so nothing else may be cancelled)."""
        if self.in_handler and self.scope is not None:
            self.scope.cancel()


class InFlight:
    """Capacity bookkeeping of one consumer (``capacity`` = its concurrency)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self.running: dict[str, Running] = {}
        # Entries finished and waiting for their batched acknowledgement.
        self.unacked: set[str] = set()
        self.max_running = 0
        # Entry of a suspect job running alone (see recovery), and whether a recovery
        # should run at once because it finished.
        self.isolated: str | None = None
        self.recover_now = False
        self._changed = trio.Event()

    def signal(self) -> None:
        """Wake every stage waiting for a change (a slot freed, a stop requested)."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_change(self) -> None:
        """Wait for the next ``signal``."""
        await self._changed.wait()

    def headroom(self) -> int:
        """How many more entries may be pending here: finished jobs awaiting their
        batched ack count too, so the pending list never exceeds 2 x concurrency."""
        return 2 * self.capacity - len(self.running) - len(self.unacked)

    def start(self, env: Envelope) -> None:
        """A job takes a slot."""
        self.free -= 1
        self.running[env.entry_id] = Running(env)
        self.max_running = max(self.max_running, len(self.running))

    def finish(self, entry_id: str) -> None:
        """A job's task ended: its slot frees now.

        The next read then overlaps the batched ack instead of waiting for it; the
        pending list stays bounded by ``headroom`` (at most 2 x concurrency entries).
        """
        del self.running[entry_id]
        if entry_id == self.isolated:
            self.isolated = None
            self.recover_now = True  # more suspects may be waiting
            self.signal()
        self.free += 1
        self.signal()

    def cancel_job(self, job_id: str) -> bool:
        """Cancel the running job ``job_id`` if it runs here."""
        for running in self.running.values():
            if running.envelope.job_id == job_id and not running.cancelled:
                running.cancelled = True
                running.interrupt()
                return True
        return False

    def idle(self) -> bool:
        """Nothing running, nothing awaiting acknowledgement, no suspect alone."""
        return not self.running and not self.unacked and self.isolated is None
