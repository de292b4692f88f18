"""Key order on ordered queues: one job per key at a time, in stream order.

An entry whose key has a job running (or being settled) waits here, in our pending
list, until that job is settled (acknowledged, retried in place or dead-lettered),
not merely finished; it takes a slot meanwhile so the fetcher does not hoard.
Entries without a key run at once.

Cancellation: the releaser runs in the consumer's handlers nursery and ends with it;
waiting entries stay pending for the partition's next owner.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import trio

from trioqueue._envelope import Envelope, EnvelopeError
from trioqueue._worker._inflight import Dispatch, InFlight

__all__ = ["KeyOrder"]


class KeyOrder:
    """Holds back entries whose key is busy; starts them once it is free."""

    def __init__(
        self,
        inflight: InFlight,
        dispatch: Dispatch,
        dispatch_envelope: Callable[[Envelope, int], None],
        *,
        stopping: Callable[[], bool],
    ) -> None:
        self._inflight = inflight
        self._run = dispatch
        # Entries whose envelope was read here: not decoded a second time.
        self._run_envelope = dispatch_envelope
        self._stopping = stopping
        # Per key: entries waiting for the key's running job to settle, in stream order.
        self._waiting: dict[str, deque[tuple[Envelope, int]]] = {}
        self._active: dict[str, str] = {}  # key -> entry id being run or settled
        self._nursery: trio.Nursery | None = None

    def holding(self) -> bool:
        """Whether entries wait for their key."""
        return bool(self._waiting)

    def attach(self, nursery: trio.Nursery) -> None:
        """Where the releaser runs (the handlers nursery), once needed."""
        self._nursery = nursery

    def dispatch(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        """Run the entry now, or hold it until its key's job has settled."""
        try:
            env = Envelope.from_entry(entry_id, fields)
        except EnvelopeError:
            self._run(entry_id, fields, deliveries)  # the runner dead-letters it
            return
        key = env.key
        if not key:
            self._run_envelope(env, deliveries)
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._releaser)
            self._nursery = None  # one releaser
        if key in self._active or key in self._waiting:
            # Held in memory (and in our pending list) until the key is free; it
            # takes a capacity slot so the fetcher does not hoard.
            self._inflight.free -= 1
            self._waiting.setdefault(key, deque()).append((env, deliveries))
            return
        self._active[key] = entry_id
        self._run_envelope(env, deliveries)

    async def _releaser(self) -> None:
        """Start a key's next job once the previous one settled (acked, retried in
        place, or dead-lettered) — not merely finished."""
        inflight = self._inflight
        while True:
            for key, entry_id in list(self._active.items()):
                if entry_id in inflight.running or entry_id in inflight.unacked:
                    continue
                del self._active[key]
                queue = self._waiting.get(key)
                if not queue or self._stopping():
                    continue
                env, deliveries = queue.popleft()
                if not queue:
                    del self._waiting[key]
                inflight.free += 1  # the waiting slot becomes the running slot
                self._active[key] = env.entry_id
                self._run_envelope(env, deliveries)
            await inflight.wait_change()
