"""Batching: a handler taking ``list[M]`` is called with up to ``batch_size`` messages,
or fewer once ``flush_interval`` seconds passed since the first one arrived.

Each job keeps its own task, capacity slot and settlement; it waits here for the
batch it joined and then succeeds or fails with it (``BatchFailed`` names the
indexes that failed, the rest succeed). A traced batch has one span, linked to each
message's producer span.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from trioqueue import _tracing as tracing
from trioqueue._errors import BatchFailed

log = logging.getLogger("trioqueue.worker.batch")


@attrs.define
class _Batch:
    msgs: list[Any] = attrs.Factory(list)
    traces: list[tracing.Trace] = attrs.Factory(list)
    outcomes: dict[int, BaseException] = attrs.Factory(dict)
    full: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)
    closed: bool = False


class Batcher:
    """Collects one handler's messages into batches and runs them."""

    def __init__(
        self,
        call: Callable[[list[Any]], Awaitable[Any]],
        *,
        batch_size: int,
        flush_interval: float,
        timeout: float | None,
        nursery: trio.Nursery,
        queue: str = "",
        partition: int = 0,
    ) -> None:
        self._call = call
        self._size = batch_size
        self._interval = flush_interval
        self._timeout = timeout
        self._nursery = nursery
        self._queue, self._partition = queue, partition
        self._open: _Batch | None = None
        self.batches_run = 0

    async def submit(self, msg: Any, trace: tracing.Trace = tracing.NO_TRACE) -> None:
        """Add ``msg`` (its trace context ``trace``) to the open batch and wait for that
        batch; raise its failure."""
        batch = self._open
        if batch is None or batch.closed:
            batch = self._open = _Batch()
            self._nursery.start_soon(self._run, batch)
        index = len(batch.msgs)
        batch.msgs.append(msg)
        batch.traces.append(trace)
        if len(batch.msgs) >= self._size:
            # Full: later messages start the next batch.
            batch.closed = True
            self._open = None
            batch.full.set()
        await batch.done.wait()
        failure = batch.outcomes.get(index)
        if failure is not None:
            raise failure

    def flush(self) -> None:
        """Run the open batch now (shutdown: do not wait for the interval)."""
        if self._open is not None:
            self._open.full.set()

    async def _run(self, batch: _Batch) -> None:
        with trio.move_on_after(self._interval):
            await batch.full.wait()
        batch.closed = True
        if self._open is batch:
            self._open = None
        tracer = tracing.tracer()
        span = None
        if tracer is not None:
            span = tracing.JobSpan.batch(tracer, self._queue, self._partition, batch.traces)
        error: Exception | None = None
        try:
            if self._timeout is None:
                await self._call(batch.msgs)
            else:
                with trio.fail_after(self._timeout):
                    await self._call(batch.msgs)
        except BatchFailed as exc:
            error = exc
            bad = {i for i in exc.failed if 0 <= i < len(batch.msgs)}
            for i in bad:
                batch.outcomes[i] = exc
        except Exception as exc:
            error = exc
            for i in range(len(batch.msgs)):
                batch.outcomes[i] = exc
        finally:
            if span is not None:
                span.end(error)
            self.batches_run += 1
            batch.done.set()
