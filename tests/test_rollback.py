"""The rollback watch: a broker that lost acknowledged writes is reported once per
partition and counted for ``status``."""

from __future__ import annotations

from pathlib import Path

import attrs
import trio

import trioqueue
from tests.conftest import Server, free_port, make_config, wait_for
from trioqueue._connection import connected
from trioqueue._embedded import find_server_binary
from trioqueue._status import collect_status


@attrs.frozen
class Note:
    n: int


async def test_a_broker_that_lost_acknowledged_entries_is_reported(
    tmp_path: Path, caplog: object
) -> None:
    """A restart without persistence loses the stream's 30 entries: the worker says so
    in one line and status counts them."""
    srv = Server(find_server_binary(), free_port(), tmp_path, extra=["--appendonly", "no"])
    srv.start()
    try:
        seen: list[int] = []
        app = trioqueue.App("rollback")

        @app.handler(queue="lossy")
        async def lossy(msg: Note) -> None:
            seen.append(msg.n)

        config = make_config(srv.url, "rb", broker={"url": srv.url, "prefix": "rb",
                                                    "connect_timeout": 1.0})  # fmt: skip
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            async with app.connect(srv.url, prefix="rb") as client:
                await client.send_many([Note(i) for i in range(30)])
            await wait_for(lambda: len(seen) == 30)
            await trio.sleep(3 * config.worker.heartbeat_interval)  # the watch saw all 30
            assert sup.statistics().lost_entries == 0
            srv.kill()
            srv.start()  # empty: nothing was persisted
            await wait_for(lambda: sup.statistics().lost_entries == 30, timeout=15)
            sup.shutdown()
        async with connected(srv.url) as redis:
            doc = await collect_status(redis, "rb", ["lossy"])
        (part,) = doc["queues"]["lossy"]["partitions"]
        assert (part["rollbacks"], part["lost"]) == (1, 30)
        records = caplog.records  # type: ignore[attr-defined]
        lines = [r.getMessage() for r in records if "lost 30" in r.getMessage()]
        assert len(lines) == 1 and "queue lossy partition 0" in lines[0]
    finally:
        srv.stop()
