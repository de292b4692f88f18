"""The app the dashboard tests look at: a queue that runs, one that fails, one ordered."""

from __future__ import annotations

import attrs
import trio

import trioqueue

app = trioqueue.App("dashboard_tests")


@attrs.frozen
class Work:
    """A job: ``fail`` makes it dead-letter at once (no retries)."""

    text: str
    fail: bool = False


@app.handler(queue="work", retries=0)
async def work(msg: Work) -> str:
    if msg.fail:
        raise ValueError(f"failed on purpose: {msg.text}")
    return msg.text.upper()


@attrs.frozen
class Step:
    """A job of the ordered queue."""

    n: int


@app.handler(queue="ordered", ordered=True, partitions=2)
async def ordered(msg: Step) -> None:
    return None


@attrs.frozen
class Hold:
    """A job that runs for ``seconds`` (until cancelled, in the tests), having reported
    ``progress`` first if given."""

    seconds: float
    progress: float | None = None


@app.handler(queue="hold")
async def hold(msg: Hold) -> None:
    if msg.progress is not None:
        await trioqueue.report_progress(msg.progress)
    await trio.sleep(msg.seconds)
