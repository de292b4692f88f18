"""Trigger word counts and fetch their results by job id.

    python wordcount.py trigger FILE...           # one job per file; prints the job ids
    python wordcount.py result --jobid JOB_ID     # prints the count (waits for it)

A worker (``trioqueue run config.toml``, or ``--burst``) does the counting. With no
worker running, this script starts the embedded broker for the moment it needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from tasks import CountWords, app

import trioqueue

# The embedded broker's URL is only known at run time; this helper is internal API.
from trioqueue._embedded import default_data_dir, embedded_broker

CONFIG_FILE = Path(__file__).resolve().parent / "config.toml"


@asynccontextmanager
async def connect(config: trioqueue.Config) -> AsyncIterator[trioqueue.Client]:
    """A client on the configured ``broker.url``, else on the embedded broker."""
    async with (
        _broker_url(config) as url,
        app.connect(url, prefix=config.broker.prefix, config=config) as client,
    ):
        yield client


@asynccontextmanager
async def _broker_url(config: trioqueue.Config) -> AsyncIterator[str]:
    if config.broker.url is not None:
        yield config.broker.url
        return
    data_dir = default_data_dir(config.base_dir, config.broker.data_dir)
    async with embedded_broker(data_dir, appendfsync=config.broker.appendfsync) as url:
        yield url


async def trigger(files: list[Path]) -> None:
    config = trioqueue.load_config(CONFIG_FILE)
    async with connect(config) as client:
        jobs = await client.send_many(CountWords(path=str(f.resolve())) for f in files)
    for f, job in zip(files, jobs, strict=True):
        print(f"{job.id}\t{f}")


async def result(job_id: str, timeout: float) -> int:
    config = trioqueue.load_config(CONFIG_FILE)
    async with connect(config) as client:
        status = await client.status(job_id, queue="words")
        if status.state == "unknown":
            print(f"no job {job_id} on queue words (or its result expired)")
            return 1
        try:
            count = await client.result(job_id, queue="words", timeout=timeout)
        except trio.TooSlowError:
            print(f"no result for job {job_id} within {timeout}s: is a worker running?")
            return 1
        except (trioqueue.JobFailed, trioqueue.JobCancelled) as exc:
            print(exc)
            return 1
    print(count)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p_trigger = commands.add_parser("trigger", help="send one word-count job per file")
    p_trigger.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p_result = commands.add_parser("result", help="print the word count of a job")
    p_result.add_argument("--jobid", required=True, help="a job id printed by trigger")
    p_result.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait (default: 10)"
    )
    args = parser.parse_args(argv)
    if args.command == "trigger":
        missing = [str(f) for f in args.files if not f.is_file()]
        if missing:
            parser.error(f"not a file: {', '.join(missing)}")
        trio.run(trigger, args.files)
        return 0
    return trio.run(result, args.jobid, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
