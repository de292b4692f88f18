"""The job runner: ``concurrency`` long-lived runner tasks, one job at a time each.

A dispatched entry takes a slot and goes to a runner through a hand-off
(``_handoff.py``: bounded by the slots, and waking idle runners one at a time, so
handlers that do not wait run back to back in one runner). The runner decodes the
envelope and message, sets the job context, calls the handler (awaited, in a
thread, in a child process or as part of a batch) under the queue's timeout, and
classifies the outcome: success and cancellation on request are acknowledged, a
failure goes to the consumer's failure policy (which may ask for another attempt in
place), a job cancelled by a shutdown is left pending for redelivery.

Each runner runs its jobs inside one cancel scope of its own, not one per job: a
task and a scope per job cost about as much as the rest of a short job's handling.
A job's cancellation (a remote cancel, a job taken over by another member) cancels
its runner's scope, and only while that job is inside its handler, so it never
reaches a settlement or another job; the runner then opens a fresh scope. A handler
that finished just as it was cancelled is settled outside the cancelled scope.

Cancellation: a remote cancel or a lost entry cancels the job's runner scope; a
timeout (``fail_after``), a lost lease or a drain past ``shutdown_grace`` cancel the
job through the scopes around it; threads are abandoned, child processes killed
(``kill_on_cancel``).

Error handling: an undecodable envelope or message, or an unknown type, is
dead-lettered with the reason; a result that cannot be stored fails the attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import orjson
import trio

from trioqueue import _outcome
from trioqueue import _tracing as tracing
from trioqueue._config import QueueSettings
from trioqueue._context import JobContext, _current, _reporter
from trioqueue._converter import describe_structure_error
from trioqueue._envelope import Envelope, EnvelopeError
from trioqueue._keys import PartitionKeys
from trioqueue._worker._acker import Acker
from trioqueue._worker._context import WorkerContext
from trioqueue._worker._handoff import Handoff
from trioqueue._worker._inflight import InFlight, Running
from trioqueue._worker._invoke import Invoker
from trioqueue._worker._metrics import since_entry
from trioqueue._worker._settle import Settler

__all__ = ["FailurePolicy", "Runner"]

log = logging.getLogger("trioqueue.worker.consumer")

# What to do with a failed attempt: (envelope, error, deliveries) -> the envelope of
# another attempt to run at once, in place (ordered queues), or None when settled.
FailurePolicy = Callable[[Envelope, BaseException, int], Awaitable[Envelope | None]]


@attrs.define(eq=False)
class _Work:
    """An entry handed to a runner."""

    env: Envelope
    deliveries: int
    # The raw fields and the reason, for an entry whose envelope cannot be read.
    malformed: tuple[Mapping[Any, Any], str] | None = None
    first: bool = True  # False for another attempt in place: its wait is not observed


@attrs.define(eq=False)
class _Outcome:
    """What one attempt's handler call gave: a result, or the error it raised."""

    result: Any = None
    error: BaseException | None = None


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
        self._invoker = Invoker(settings, keys.partition, ctx.process_limiter)
        self._hooks: dict[str, Any] = {}  # cattrs structure hook per message type
        self._handoff: Handoff[_Work] = Handoff()
        self._timings = ctx.metrics.timings(settings.name)  # None: no metrics server

    async def _fail(self, env: Envelope, exc: BaseException, deliveries: int) -> Envelope | None:
        await self._settler.fail(env, exc)
        return None

    def start(self, nursery: trio.Nursery) -> None:
        """Start the runners in ``nursery`` (the consumer's handlers nursery)."""
        self._invoker.start(nursery)
        for _ in range(self._settings.concurrency):
            nursery.start_soon(self._serve)

    def dispatch(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        """Hand one entry to a runner (it takes a slot)."""
        try:
            env = Envelope.from_entry(entry_id, fields)
        except EnvelopeError as exc:
            blank = Envelope(entry_id, entry_id, "", b"", 1, 0)
            self._hand(_Work(blank, deliveries, (fields, str(exc))))
            return
        self.dispatch_envelope(env, deliveries)

    def dispatch_envelope(self, env: Envelope, deliveries: int) -> None:
        """Hand an entry whose envelope was already read to a runner (it takes a slot)."""
        self._hand(_Work(env, deliveries))

    def _hand(self, work: _Work) -> None:
        self._inflight.start(work.env)
        # Bounded by the slots: every entry handed on holds one.
        self._handoff.put(work)

    def flush_batches(self) -> None:
        """Run partial batches now (a drain began) instead of after their interval."""
        self._invoker.flush_batches()

    async def _serve(self) -> None:
        _reporter.set(self._settler.progress)  # report_progress() in this task's jobs
        carry: _Work | None = None
        while True:
            unsettled: tuple[_Work, _Outcome] | None = None
            with trio.CancelScope() as scope:
                while unsettled is None and not scope.cancel_called:
                    work = carry if carry is not None else await self._handoff.get()
                    carry = None
                    unsettled = await self._job(work, scope)
            if unsettled is not None:
                # Its handler finished as the scope was cancelled: settle it outside.
                work, outcome = unsettled
                running = self._inflight.running[work.env.entry_id]
                try:
                    again = await self._conclude(work, running, outcome)
                except BaseException:
                    self._inflight.finish(work.env.entry_id)
                    raise
                if again is None:
                    self._inflight.finish(work.env.entry_id)
                else:
                    carry = again

    async def _job(self, work: _Work, scope: trio.CancelScope) -> tuple[_Work, _Outcome] | None:
        """Run ``work`` to its settlement in ``scope``; free its slot.

        Returns the work and its outcome instead when the scope was cancelled while
        the handler returned: the settlement must not run in a cancelled scope.
        """
        entry_id = work.env.entry_id
        running = self._inflight.running[entry_id]
        handing_on = False
        try:
            while True:
                running.scope = scope
                if work.malformed is not None:
                    fields, reason = work.malformed
                    await self._settler.dead_raw(entry_id, fields, "MalformedEnvelope", reason)
                    return None
                if running.fenced:
                    return None
                if running.cancelled:
                    self._cancelled(work.env)
                    return None
                outcome = await self._attempt(work, running)
                if outcome is None:
                    return None
                if scope.cancel_called:
                    handing_on = True
                    return work, outcome
                again = await self._conclude(work, running, outcome)
                if again is None:
                    return None
                work = again
        except trio.Cancelled:
            if scope.cancel_called and running.cancelled and not running.fenced:
                # A client cancelled it: settle it as cancelled, never retry it.
                self._cancelled(running.envelope)
            # Else a drain or a lost lease cancelled it (or another member took the
            # entry over): leave it pending for redelivery.
            raise
        finally:
            if not handing_on:
                self._inflight.finish(entry_id)

    def _cancelled(self, env: Envelope) -> None:
        log.info("job %s on queue %s cancelled on request", env.job_id, self._settings.name)
        doc = _outcome.cancelled(attempts=env.attempt, enqueued=env.enqueued_ms)
        self._acker.add(env.entry_id, env.job_id, doc, env.unique, env.attempt, cancelled=True)

    async def _attempt(self, work: _Work, running: Running) -> _Outcome | None:
        """Call the handler once; None if the job was settled without a call."""
        env, deliveries = work.env, work.deliveries
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
            return None
        try:
            hook = self._hooks.get(env.type_name)
            if hook is None:
                hook = self._hooks[env.type_name] = ctx.app.converter.get_structure_hook(
                    handler.message_type
                )
            msg = hook(orjson.loads(env.body), handler.message_type)
        except Exception as exc:
            await self._settler.dead(env, "DecodeError", describe_structure_error(exc))
            return None
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
        outcome = _Outcome()
        timings, acker = self._timings, self._acker
        if timings is not None and work.first:
            timings.wait.observe(since_entry(env.entry_id))
        if acker.events_max:
            acker.started(env.job_id, env.attempt)
        # A batch has one span of its own (see Batcher), not one per job.
        tracer = None if handler.batched else tracing.tracer()
        span = None if tracer is None else tracing.JobSpan.job(
            tracer, s.name, job.partition, job_id=env.job_id, type_name=env.type_name,
            attempt=env.attempt, trace_=env.trace,
        )  # fmt: skip
        started = time.perf_counter()
        token = _current.set(job)
        running.in_handler = True
        call = self._invoker.call
        try:
            timeout = s.timeout
            # A batch's timeout bounds the handler call, not the wait to fill it.
            if timeout is None or handler.batched:
                # A cancel scope per job is a measurable share of a short job's
                # cost; without a timeout it could never fire.
                outcome.result = await call(handler, msg, env.trace)
            else:
                with trio.fail_after(timeout):
                    outcome.result = await call(handler, msg, env.trace)
        except (Exception, trio.TooSlowError) as exc:
            outcome.error = exc
        finally:
            running.in_handler = False
            _current.reset(token)
            if span is not None:
                span.end(outcome.error)
            elapsed = time.perf_counter() - started
            acker.timed(elapsed)  # the history's handler time
            if timings is not None:
                timings.duration.observe(elapsed)
        return outcome

    async def _conclude(self, work: _Work, running: Running, outcome: _Outcome) -> _Work | None:
        """Settle an attempt; return the work again for another attempt in place."""
        env = work.env
        if running.fenced:
            return None
        error = outcome.error
        if error is None:
            stored = None
            if self._settings.result_ttl > 0:
                try:
                    unstructured = self._ctx.app.converter.unstructure(outcome.result)
                    stored = _outcome.succeeded(
                        unstructured, attempts=env.attempt, enqueued=env.enqueued_ms
                    )
                except Exception as exc:
                    # An unstorable result is the handler's failure; left to propagate it
                    # would take down the consumer and every other job with it.
                    error = exc
            if error is None:
                self._acker.add(env.entry_id, env.job_id, stored, env.unique, env.attempt)
                return None
        again = await self.on_failure(env, error, work.deliveries)
        if again is None:
            return None
        running.envelope = again
        return _Work(again, work.deliveries, first=False)
