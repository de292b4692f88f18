"""Both clients write the very same entries: they run one core (``trioqueue._core``)."""

from __future__ import annotations

from typing import Any

import trio

import trioqueue
from tests.conftest import Server
from tests.test_bare_job_id import Alpha, Beta, make_app
from trioqueue._envelope import Envelope
from trioqueue._keys import PartitionKeys


async def entries(redis: Any, prefix: str) -> list[tuple[str, int, dict[bytes, bytes]]]:
    """Every entry and delayed-set member of the test app's queues, without entry ids."""
    out = []
    for queue, partitions in (("alpha", 1), ("beta", 4)):
        for p in range(partitions):
            keys = PartitionKeys(prefix, queue, p)
            for e in await redis.xrange(keys.stream):
                out.append((queue, p, dict(e.field_values)))
            for member in await redis.zrange(keys.delayed, 0, -1):
                doc = Envelope.from_delayed(member)
                out.append((queue, p, {b"delayed": doc.body, b"id": doc.job_id.encode()}))
    return out


def produce(client: Any) -> Any:
    """The same sends through either client (awaitable for the Trio one)."""
    sends = [
        (Alpha(1), {"job_id": "a-1"}),
        (Beta(2), {"job_id": "b-2", "key": "user-7"}),
        (Beta(3), {"job_id": "b-3", "delay": 60}),
    ]
    if isinstance(client, trioqueue.Client):

        async def run() -> None:
            for msg, kwargs in sends:
                await client.send(msg, **kwargs)
            await client.send_many([Beta(i) for i in range(5)], key=lambda m: f"k{m.n}")

        return run()
    for msg, kwargs in sends:
        client.send(msg, **kwargs)
    client.send_many([Beta(i) for i in range(5)], key=lambda m: f"k{m.n}")
    return None


async def test_both_clients_write_identical_entries(
    server: Server, redis: Any, prefix: str
) -> None:
    """Sent the same way, the Trio and the sync client leave the same stream entries
    and delayed-set documents, field for field (the random ids of send_many aside)."""
    app = make_app()
    async with app.connect(server.url, prefix=f"{prefix}a") as client:
        await produce(client)

    def sync_side() -> None:
        with app.connect_sync(server.url, prefix=f"{prefix}s") as client:
            produce(client)

    await trio.to_thread.run_sync(sync_side)
    by_async = await entries(redis, f"{prefix}a")
    by_sync = await entries(redis, f"{prefix}s")

    def comparable(rows: list[tuple[str, int, dict[bytes, bytes]]]) -> list[Any]:
        chosen = {b"a-1", b"b-2", b"b-3"}
        return sorted(
            (q, p, sorted((k, v) for k, v in f.items() if k != b"id" or v in chosen))
            for q, p, f in rows
        )

    assert len(by_async) == 8 and comparable(by_async) == comparable(by_sync)
