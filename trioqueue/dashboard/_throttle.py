"""Slowing down token guessing: failed token checks per client address.

A wrong token (on the login form, or in an ``Authorization: Bearer`` header) counts
against the address it came from. After ``limit`` failures within ``window`` seconds
that address is refused, with 429 and ``Retry-After``, until the window of its first
failure has passed; a right token does not reset the count, so a guesser gains nothing
by mixing in a known one. Other addresses are not affected, so a flood from one client
cannot lock everybody out. The table is bounded: past ``MAX_ADDRESSES`` the oldest
entries are dropped.

Behind a reverse proxy every request comes from the proxy's address, so its clients
share one count: limit attempts in the proxy, or wrap the mounted dashboard in
Hypercorn's ``ProxyFixMiddleware`` so that the client's address is the one counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MAX_ADDRESSES", "Throttle", "client_address"]

MAX_ADDRESSES = 10_000


class Throttle:
    """Failed token checks per address, each counted from its first failure for
    ``window`` seconds."""

    def __init__(
        self,
        *,
        limit: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, tuple[float, int]] = {}  # address: (first, count)

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may try a token again; 0 if it may now."""
        entry = self._failures.get(address)
        if entry is None:
            return 0
        first, count = entry
        left = first + self.window - self._clock()
        if left <= 0:
            del self._failures[address]
            return 0
        return math.ceil(left) if count >= self.limit else 0

    def failed(self, address: str) -> None:
        """Count a wrong token from ``address``."""
        now = self._clock()
        first, count = self._failures.pop(address, (now, 0))
        if first + self.window <= now:
            first, count = now, 0
        # Re-inserted last: the dict's order is the order of last failure.
        self._failures[address] = (first, count + 1)
        while len(self._failures) > MAX_ADDRESSES:
            del self._failures[next(iter(self._failures))]


def client_address(scope: Mapping[str, Any]) -> str:
    """The address an ASGI request came from (``""`` when the server gives none)."""
    client = scope.get("client")
    if isinstance(client, list | tuple) and client:
        return str(client[0])
    return ""
