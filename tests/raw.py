"""A raw client for tests to look at (and tamper with) the broker's keys directly.

coredis, independent of trioqueue's own client, so that what a test sees of the
server does not depend on the code under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import coredis


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[coredis.Redis[bytes]]:
    """A coredis client on ``url`` (bytes replies), closed on exit."""
    client: coredis.Redis[bytes] = coredis.Redis.from_url(url, decode_responses=False)
    async with client:
        await client.ping()
        yield client
