"""Calling a handler: awaited, in a thread, in a child process, or as part of a batch.

The runner decides when a job runs and how it settles; this part only makes the call,
with the limits each kind of call needs: a thread limiter per consumer (its
concurrency), the worker's process limiter, and one ``Batcher`` per batched message
type.
"""

from __future__ import annotations

import functools
from typing import Any

import trio
import trio_parallel

from trioqueue import _tracing as tracing
from trioqueue._config import QueueSettings
from trioqueue._context import _current
from trioqueue._handler import Handler
from trioqueue._tracing import Trace
from trioqueue._worker._batch import Batcher
from trioqueue._worker._process import in_child, process_target

__all__ = ["Invoker"]


class Invoker:
    """Calls one consumer's handlers."""

    def __init__(
        self, settings: QueueSettings, partition: int, process_limiter: trio.CapacityLimiter
    ) -> None:
        self._settings = settings
        self._partition = partition
        self._process_limiter = process_limiter
        self._thread_limiter = trio.CapacityLimiter(settings.concurrency)
        self._batchers: dict[str, Batcher] = {}
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Run batches in ``nursery`` (the consumer's handlers nursery)."""
        self._nursery = nursery

    def flush_batches(self) -> None:
        """Run partial batches now (a drain began) instead of after their interval."""
        for batcher in self._batchers.values():
            batcher.flush()

    async def call(self, handler: Handler[Any], msg: Any, trace: Trace) -> Any:
        """Call ``handler`` with ``msg``; a batched one with the batch ``msg`` joins
        (``trace``: the message's trace context, which the batch's span links to)."""
        if handler.batched:
            await self._batcher(handler).submit(msg, trace)
            return None
        return await self._invoke(handler, msg)

    async def _invoke(self, handler: Handler[Any], arg: Any) -> Any:
        if handler.is_async:
            return await handler.fn(arg)
        if handler.run_in == "process":
            # kill_on_cancel: a timeout or remote cancel kills the child's work; a
            # crashed child raises BrokenWorkerError, which fails only this attempt.
            # The child gets the job's context: current_job() and the job's span.
            return await trio_parallel.run_sync(
                in_child,
                process_target(handler.fn),
                _current.get(None),
                tracing.current(),
                arg,
                kill_on_cancel=True,
                limiter=self._process_limiter,
            )
        return await trio.to_thread.run_sync(
            handler.fn, arg, limiter=self._thread_limiter, abandon_on_cancel=True
        )

    def _batcher(self, handler: Handler[Any]) -> Batcher:
        batcher = self._batchers.get(handler.type_name)
        if batcher is None:
            assert handler.batch_size is not None and self._nursery is not None
            batcher = self._batchers[handler.type_name] = Batcher(
                functools.partial(self._invoke, handler), batch_size=handler.batch_size,
                flush_interval=handler.flush_interval, timeout=self._settings.timeout,
                nursery=self._nursery, queue=self._settings.name, partition=self._partition,
            )  # fmt: skip
        return batcher
