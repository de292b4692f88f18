"""Send jobs from Python: ``python send.py`` (add ``--wait`` when a worker runs).

The config has no broker URL, so the broker is the embedded one whose data lives in
``.trioqueue/``. If a worker (``trioqueue run config.toml``) is running, it owns that
broker and this script connects to it; if not, this script starts the broker for
the time it runs, and the jobs wait on disk for the next worker.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from tasks import CountWords, SendWelcomeEmail, app

import trioqueue

# Not public API yet: the embedded broker's URL is only known at run time.
from trioqueue._embedded import default_data_dir, embedded_broker

HERE = Path(__file__).resolve().parent


@asynccontextmanager
async def broker_url(config: trioqueue.Config) -> AsyncIterator[str]:
    """The configured ``broker.url``, else the embedded broker's URL."""
    if config.broker.url is not None:
        yield config.broker.url
        return
    data_dir = default_data_dir(config.base_dir, config.broker.data_dir)
    async with embedded_broker(data_dir, appendfsync=config.broker.appendfsync) as url:
        yield url


async def main(wait: bool) -> None:
    config = trioqueue.load_config(HERE / "config.toml")
    async with (
        broker_url(config) as url,
        app.connect(url, prefix=config.broker.prefix, config=config) as client,
    ):
        job = await client.send(SendWelcomeEmail(email="ada@example.org", name="Ada"))
        print(f"sent {job.id} to {job.queue}")

        # One round trip for the whole batch.
        jobs = await client.send_many(
            [
                SendWelcomeEmail(email="grace@example.org", name="Grace"),
                SendWelcomeEmail(email="nobody@example.invalid", name="Nobody"),
                CountWords(text="the quick brown fox jumps over the lazy dog"),
            ]
        )
        for job in jobs:
            print(f"sent {job.id} to {job.queue}")

        if wait:
            count = await client.result(jobs[-1], timeout=30)
            print(f"CountWords returned {count}")


if __name__ == "__main__":
    trio.run(main, "--wait" in sys.argv[1:])
