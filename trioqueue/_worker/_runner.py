"""The job runner: one task per job, each in its own cancel scope.

A dispatched entry takes a slot and becomes a task in the consumer's handlers
nursery. The task decodes the envelope and message, sets the job context, calls the
handler (awaited, in a thread, in a child process or as part of a batch) under the
queue's timeout, and classifies the outcome: success and cancellation on request are
acknowledged, a failure goes to the consumer's failure policy, a job cancelled by a
shutdown is left pending for redelivery.

Cancellation: a job's scope is cancelled by a timeout, a remote cancel, a lost
lease or a drain past ``shutdown_grace``; threads are abandoned, child processes
killed (``kill_on_cancel``).

Error handling: an undecodable envelope or message, or an unknown type, is
dead-lettered with the reason; a result that cannot be stored fails the attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import orjson
import trio
import trio_parallel

from trioqueue import _outcome
from trioqueue._config import QueueSettings
from trioqueue._context import JobContext, _current
from trioqueue._converter import describe_structure_error
from trioqueue._envelope import Envelope, EnvelopeError
from trioqueue._handler import Handler
from trioqueue._keys import PartitionKeys
from trioqueue._worker._acker import Acker
from trioqueue._worker._batch import Batcher
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._inflight import InFlight
from trioqueue._worker._process import process_target
from trioqueue._worker._settle import Settler

__all__ = ["FailurePolicy", "Runner"]

log = logging.getLogger("trioqueue.worker.consumer")

# What to do with a failed attempt: (envelope, error, deliveries).
FailurePolicy = Callable[[Envelope, BaseException, int], Awaitable[None]]


class Runner:
    """Runs the jobs of one consumer."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: QueueSettings,
        keys: PartitionKeys,
        inflight: InFlight,
        settler: Settler,
        acker: Acker,
        *,
        epoch: int = 0,
        checkpoint_first: bool = False,
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._keys = keys
        self._inflight = inflight
        self._settler = settler
        self._acker = acker
        # Lease epoch of an ordered partition (0 for shared queues): part of the
        # fencing token handlers get through current_job().
        self._epoch = epoch
        self._checkpoint_first = checkpoint_first
        self.on_failure: FailurePolicy = self._fail
        self._thread_limiter = trio.CapacityLimiter(settings.concurrency)
        self._batchers: dict[str, Batcher] = {}
        self._hooks: dict[str, Any] = {}  # cattrs structure hook per message type
        self.nursery: trio.Nursery | None = None  # the handlers nursery, once running

    async def _fail(self, env: Envelope, exc: BaseException, deliveries: int) -> None:
        await self._settler.fail(env, exc)

    def dispatch(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        """Start a task for one entry (it takes a slot)."""
        scope = trio.CancelScope()
        try:
            env = Envelope.from_entry(entry_id, fields)
        except EnvelopeError as exc:
            env = Envelope(entry_id, entry_id, "", b"", 1, 0)
            dead = self._settler.dead_raw(entry_id, fields, "MalformedEnvelope", str(exc))
            self._start(env, scope, dead)
            return
        self._start(env, scope, self.run_job(env, scope, deliveries))

    def flush_batches(self) -> None:
        """Run partial batches now (a drain began) instead of after their interval."""
        for batcher in self._batchers.values():
            batcher.flush()

    def _start(
        self, env: Envelope, scope: trio.CancelScope, coro: Coroutine[Any, Any, None]
    ) -> None:
        self._inflight.start(env, scope)
        inflight = self._inflight

        async def task() -> None:
            try:
                await coro
            finally:
                inflight.finish(env.entry_id)

        assert self.nursery is not None
        self.nursery.start_soon(task)

    async def run_job(self, env: Envelope, scope: trio.CancelScope, deliveries: int) -> None:
        """Run one attempt of a job and settle its outcome."""
        if self._checkpoint_first:
            # A job dispatched just before the process stalled starts in the first
            # round after it, when Trio has just noticed a lease deadline that passed
            # meanwhile: no handler code may run then, not even up to its first await.
            await trio.lowlevel.checkpoint_if_cancelled()
        ctx, s = self._ctx, self._settings
        handler = ctx.app.handler_for_name(env.type_name)
        if handler is None:
            await self._settler.dead(
                env,
                "UnknownMessageType",
                f"no handler is registered for message type {env.type_name!r} "
                f"(app {ctx.app.name!r})",
            )
            return
        try:
            hook = self._hooks.get(env.type_name)
            if hook is None:
                hook = self._hooks[env.type_name] = ctx.app.converter.get_structure_hook(
                    handler.message_type
                )
            msg = hook(orjson.loads(env.body), handler.message_type)
        except Exception as exc:
            await self._settler.dead(env, "DecodeError", describe_structure_error(exc))
            return
        job = JobContext(
            job_id=env.job_id,
            queue=s.name,
            partition=self._keys.partition,
            attempt=env.attempt,
            deliveries=deliveries,
            entry_id=env.entry_id,
            worker=ctx.member_id,
            epoch=self._epoch,
        )
        outcome: BaseException | None = None
        result: Any = None
        token = _current.set(job)
        try:
            with scope:
                timeout = s.timeout
                # A batch's timeout bounds the handler call, not the wait to fill it.
                if timeout is None or handler.batched:
                    # A second cancel scope per job is a measurable share of a short
                    # job's cost; without a timeout it could never fire.
                    result = await self._call(handler, msg)
                else:
                    with trio.fail_after(timeout):
                        result = await self._call(handler, msg)
        except (Exception, trio.TooSlowError) as exc:
            outcome = exc
        finally:
            _current.reset(token)
        running = self._inflight.running.get(env.entry_id)
        if running is not None and running.fenced:
            return
        if running is not None and running.cancelled and scope.cancelled_caught:
            # A client cancelled it: settle it as cancelled, never retry it.
            log.info("job %s on queue %s cancelled on request", env.job_id, s.name)
            doc = _outcome.cancelled(attempts=env.attempt, enqueued=env.enqueued_ms)
            self._acker.add(env.entry_id, env.job_id, doc, env.unique)
            return
        if scope.cancelled_caught:
            # Shutdown cancelled the job: leave it pending for redelivery.
            return
        if outcome is None:
            stored = None
            if s.result_ttl > 0:
                try:
                    unstructured = ctx.app.converter.unstructure(result)
                    stored = _outcome.succeeded(
                        unstructured, attempts=env.attempt, enqueued=env.enqueued_ms
                    )
                except Exception as exc:
                    # An unstorable result is the handler's failure; left to propagate it
                    # would take down the consumer and every other job with it.
                    await self.on_failure(env, exc, deliveries)
                    return
            self._acker.add(env.entry_id, env.job_id, stored, env.unique)
            return
        await self.on_failure(env, outcome, deliveries)

    async def _call(self, handler: Handler[Any], msg: Any) -> Any:
        if handler.batched:
            await self._batcher(handler).submit(msg)
            return None
        return await self._invoke(handler, msg)

    async def _invoke(self, handler: Handler[Any], arg: Any) -> Any:
        if handler.is_async:
            return await handler.fn(arg)
        if handler.run_in == "process":
            # kill_on_cancel: a timeout or remote cancel kills the child's work; a
            # crashed child raises BrokenWorkerError, which fails only this attempt.
            return await trio_parallel.run_sync(
                process_target(handler.fn),
                arg,
                kill_on_cancel=True,
                limiter=self._ctx.process_limiter,
            )
        return await trio.to_thread.run_sync(
            handler.fn, arg, limiter=self._thread_limiter, abandon_on_cancel=True
        )

    def _batcher(self, handler: Handler[Any]) -> Batcher:
        batcher = self._batchers.get(handler.type_name)
        if batcher is None:
            assert handler.batch_size is not None and self.nursery is not None

            async def call(msgs: list[Any]) -> Any:
                return await self._invoke(handler, msgs)

            batcher = self._batchers[handler.type_name] = Batcher(
                call,
                batch_size=handler.batch_size,
                flush_interval=handler.flush_interval,
                timeout=self._settings.timeout,
                nursery=self.nursery,
            )
        return batcher
