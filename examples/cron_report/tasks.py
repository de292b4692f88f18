"""The cron-report app: schedules produce ``Report`` messages, a handler writes them.

Two schedules are declared here and one more in ``config.toml`` (``[[schedules]]``).
A scheduled function that returns a message has it sent as a job, idempotently per
tick, so the report is durable: it is retried like any job, and written once even
with several workers running.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import attrs
import trio

import trioqueue

app = trioqueue.App("cron_report")
log = logging.getLogger("cron_report")

REPORT_FILE = Path(__file__).resolve().parent / "reports.log"


@attrs.frozen
class Report:
    """Write one line to the report file."""

    title: str
    detail: str = ""


@app.handler(queue="reports", retries=3)
async def write_report(msg: Report) -> None:
    job = trioqueue.current_job()
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    line = f"{now} {msg.title}: {msg.detail or '-'} (job {job.job_id})\n"
    async with await trio.open_file(REPORT_FILE, "a", encoding="utf-8") as f:
        await f.write(line)
    log.info("report written: %s", msg.title)


@app.cron("*/1 * * * *")
def every_minute() -> Report:
    """At the start of every minute (cron syntax, UTC)."""
    return Report(title="minutely", detail=f"lines so far: {_lines_so_far()}")


@app.cron(every=5)
def every_five_seconds() -> Report:
    """Every 5 seconds: quick to watch in a demo."""
    return Report(title="every 5s")


def _lines_so_far() -> int:
    try:
        with REPORT_FILE.open(encoding="utf-8") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0
