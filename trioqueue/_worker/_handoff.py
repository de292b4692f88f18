"""The hand-off from the fetcher to the runners: waiting work, and idle runners woken
one at a time.

A memory channel wakes a parked runner for every entry sent, so a batch of a hundred
entries costs a hundred task switches even when every handler returns without
waiting for anything. Here an entry wakes an idle runner only if no runner is already
on its way to take work: the woken runner takes an entry and, if more are waiting,
wakes the next one before it runs its own. A runner whose handler never waits keeps
taking entries without a switch in between; as soon as one waits, the runner woken
behind it takes the next entry, so no entry waits behind a handler that is blocked.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

__all__ = ["Handoff"]

T = TypeVar("T")


class Handoff(Generic[T]):
    """Work handed from one producer to many runner tasks (unbounded: the producer
    takes a slot before it puts an item, so it never holds more than the slots)."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._idle: deque[trio.Event] = deque()
        # A runner was woken and has not taken its item yet.
        self._waking = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Queue ``item`` for the next free runner."""
        self._items.append(item)
        self._wake()

    async def get(self) -> T:
        """The next item; waits (idle) while there is none.

        Returns at once, without a checkpoint, when an item is waiting: runners take
        work back to back. Cancelled while idle, it takes nothing.
        """
        while not self._items:
            woken = trio.Event()
            self._idle.append(woken)
            try:
                await woken.wait()
            except BaseException:
                if woken.is_set():
                    # Woken to take an item, but cancelled first: pass the wake on.
                    self._waking = False
                    self._wake()
                else:
                    self._idle.remove(woken)
                raise
            self._waking = False
        item = self._items.popleft()
        # More waiting: the next runner takes them if this one's handler waits.
        self._wake()
        return item

    def _wake(self) -> None:
        if self._waking or not self._items or not self._idle:
            return
        self._waking = True
        self._idle.popleft().set()
