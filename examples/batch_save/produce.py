"""Send N readings, one job each, in as few round trips as possible (``send_many``).

    python produce.py 1000

With no worker running, this script starts the embedded broker for the moment it
needs it; the rows wait in ``.trioqueue/`` for ``trioqueue run config.toml``.
"""

from __future__ import annotations

import argparse
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from tasks import Row, app

import trioqueue

# The embedded broker's URL is only known at run time; this helper is internal API.
from trioqueue._embedded import default_data_dir, embedded_broker

CONFIG_FILE = Path(__file__).resolve().parent / "config.toml"


@asynccontextmanager
async def broker_url(config: trioqueue.Config) -> AsyncIterator[str]:
    """The configured ``broker.url``, else the embedded broker's URL."""
    if config.broker.url is not None:
        yield config.broker.url
        return
    data_dir = default_data_dir(config.base_dir, config.broker.data_dir)
    async with embedded_broker(data_dir, appendfsync=config.broker.appendfsync) as url:
        yield url


async def main(n: int) -> None:
    config = trioqueue.load_config(CONFIG_FILE)
    rows = [
        Row(id=uuid.uuid4().hex, sensor=f"sensor-{i % 8}", value=round(random.uniform(15, 25), 2))
        for i in range(n)
    ]
    async with (
        broker_url(config) as url,
        app.connect(url, prefix=config.broker.prefix, config=config) as client,
    ):
        jobs = await client.send_many(rows)
    print(f"sent {len(jobs)} rows to queue {jobs[0].queue if jobs else 'rows'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Send N readings to the rows queue.")
    parser.add_argument("n", type=int, nargs="?", default=1000, help="how many (default 1000)")
    trio.run(main, parser.parse_args().n)
