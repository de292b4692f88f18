"""One consumer: fetches a partition's entries into handler tasks and settles them.

consumer (own nursery)
├── fetcher   — XREADGROUP only as many entries as there is free capacity
├── handlers  — one task per job, each in its own cancel scope
├── acker     — acknowledges finished jobs in batches (one script call per batch)
└── renewer   — keeps running jobs' idle time low, notices jobs taken over
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import coredis.exceptions as cx
import orjson
import trio
import trio_parallel

from trioqueue._app import Handler
from trioqueue._client import run_script
from trioqueue._config import QueueSettings
from trioqueue._context import JobContext, _current
from trioqueue._converter import describe_structure_error
from trioqueue._envelope import Envelope, EnvelopeError, entry_fields_text
from trioqueue._errors import Reject, Retry
from trioqueue._keys import GROUP, PartitionKeys, member_key
from trioqueue._worker._batch import Batcher
from trioqueue._worker._process import process_target

if TYPE_CHECKING:
    from trioqueue._worker._supervisor import Supervisor

log = logging.getLogger("trioqueue")

ACK_BATCH = 500
TRACEBACK_CHARS = 4000
# A job taken over from vanished members this many deliveries in a row runs alone. The
# first takeover is usually an ordinary crash or restart: all the jobs it held come
# back, and running those one by one would only slow recovery. A job present at the
# next death too may be the one killing its workers; alone, only it is charged.
SUSPECT_AT = 3


class _Fenced(Exception):
    """This consumer no longer owns the entry: another member took the job over."""


@attrs.define
class _Running:
    envelope: Envelope
    scope: trio.CancelScope
    fenced: bool = False
    cancelled: bool = False


@attrs.define
class ConsumerStats:
    """Counters a consumer keeps (for burst progress, tests and status)."""

    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    fenced: int = 0
    reclaimed: int = 0
    lost_by_trim: int = 0


class Consumer:
    """Consumes one partition of one queue for a supervisor."""

    def __init__(self, sup: Supervisor, settings: QueueSettings, partition: int = 0) -> None:
        self.sup = sup
        self.settings = settings
        self.keys = PartitionKeys(sup.prefix, settings.name, partition)
        self.capacity = settings.concurrency
        self.stats = ConsumerStats()
        self.running: dict[str, _Running] = {}
        self._free = self.capacity
        self._changed = trio.Event()
        # (entry id, job id, outcome document, whether the caller chose the job id)
        self._acks: list[tuple[str, str, bytes | None, bool]] = []
        self._unacked: set[str] = set()
        self._ack_wanted = trio.Event()
        self._flush_lock = trio.Lock()
        self._reread_own = False
        self._thread_limiter = trio.CapacityLimiter(self.capacity)
        self._batchers: dict[str, Batcher] = {}
        self._hooks: dict[str, Any] = {}  # cattrs structure hook per message type
        self._next_recovery = 0.0
        # Entry of a suspect job running alone (see SUSPECT_AT), and whether suspects
        # wait for this consumer to become idle.
        self._isolated: str | None = None
        self._suspects_left = False
        self.max_seen_in_flight = 0
        self.drained = False
        # Lease epoch of an ordered partition (0 for shared queues): part of the
        # fencing token handlers get through current_job().
        self.epoch = 0
        self._revoked_at: float | None = None

    def stopping(self) -> bool:
        """Whether to stop fetching: the worker shuts down or the partition was revoked."""
        return self._revoked_at is not None or self.sup.is_stopping()

    @property
    def drain_deadline(self) -> float:
        """When running jobs are cancelled once fetching stopped."""
        if self._revoked_at is not None:
            return min(self._revoked_at, self.sup.drain_deadline)
        return self.sup.drain_deadline

    def revoke(self, deadline: float) -> None:
        """Stop fetching and drain running jobs by ``deadline`` (trio clock)."""
        if self._revoked_at is None:
            self._revoked_at = deadline
            self._signal()

    # ----------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.sup.outage.call("create consumer group", self._ensure_group)
        log.info(
            "queue %s attached (concurrency %d, stream %s)",
            self.settings.name,
            self.capacity,
            self.keys.stream,
        )
        async with trio.open_nursery() as loops:
            loops.start_soon(self._acker)
            loops.start_soon(self._renewer)
            async with trio.open_nursery() as handlers:
                self._handlers = handlers
                task_status.started()
                await self._fetch_loop()
                # Shutdown: run partial batches now instead of after their interval.
                for batcher in self._batchers.values():
                    batcher.flush()
                with trio.move_on_at(self.drain_deadline):
                    while self.running:
                        await self._wait_change()
                if self.running:
                    log.warning(
                        "queue %s: %d jobs still running after shutdown_grace; cancelling "
                        "them (they stay pending and will be redelivered)",
                        self.settings.name,
                        len(self.running),
                    )
                handlers.cancel_scope.cancel()
            with trio.move_on_after(self.sup.config.broker.socket_timeout):
                await self._flush()
            loops.cancel_scope.cancel()

    async def _ensure_group(self) -> None:
        # A script (see ENSURE_GROUP) so that it also works on a full server.
        await self.sup.scripts.ensure_group(keys=[self.keys.stream], args=[GROUP])

    # ----------------------------------------------------------------- capacity

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_change(self) -> None:
        await self._changed.wait()

    # ----------------------------------------------------------------- fetching

    async def _fetch_loop(self) -> None:
        sup = self.sup
        while not self.stopping():
            while (
                self._free <= 0 or self._headroom() <= 0 or self._isolated is not None
            ) and not self.stopping():
                await self._wait_change()
            if self.stopping():
                return
            # Let handlers that are finishing right now release capacity first, so a
            # busy consumer reads in batches instead of one entry per round trip. The
            # second pass makes sure jobs dispatched from the last read have started:
            # in one pass the scheduler may run this task first, and issuing the next
            # read delays their start by the client's per-command cost.
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            try:
                if trio.current_time() >= self._next_recovery:
                    self._next_recovery = trio.current_time() + sup.config.worker.heartbeat_interval
                    self._suspects_left = False
                    await self._recover()
                    if self._free <= 0 or self._isolated is not None:
                        continue
                if self._suspects_left:
                    # Take no new work: once idle, a recovery may run a suspect alone.
                    if self._idle():
                        self._next_recovery = 0.0
                    else:
                        with trio.move_on_at(self._next_recovery):
                            await self._wait_change()
                    continue
                entries = await self._read(min(self._free, self._headroom()))
            except Exception as exc:
                await self._fetch_failed(exc)
                continue
            for entry_id, fields in entries:
                self._dispatch(entry_id, fields, 1)
            if not entries and sup.burst and await self._burst_done():
                return

    async def _fetch_failed(self, exc: Exception) -> None:
        from trioqueue._connection import is_connection_error

        # A read cut off on our side may still have delivered entries to our PEL.
        self._reread_own = True
        if is_connection_error(exc):
            self.sup.outage.failed(f"read {self.settings.name}", exc)
            await trio.sleep(self.sup.reconnect_delay())
            return
        msg = str(exc)
        # coredis raises NOGROUP as this class, without the code in the message.
        if "NOGROUP" in msg or isinstance(exc, cx.StreamConsumerGroupError):
            log.warning(
                "queue %s: consumer group or stream vanished (deleted, or the server lost "
                "its data); recreating it",
                self.settings.name,
            )
            try:
                await self.sup.outage.call("recreate consumer group", self._ensure_group)
            except Exception as again:
                # E.g. the key now holds another type: the next read reports that. This
                # error escaping would take the whole supervisor down with this queue.
                log.warning(
                    "queue %s: cannot recreate the consumer group: %s", self.settings.name, again
                )
                await trio.sleep(1.0)
            return
        if "WRONGTYPE" in msg or isinstance(exc, cx.WrongTypeError):
            log.error(
                "queue %s: key %s holds a non-stream value; another program uses this key "
                "prefix. Not consuming this queue until it is fixed.",
                self.settings.name,
                self.keys.stream,
            )
            # Wait out the pause, but let a shutdown end it at once.
            with trio.move_on_after(10):
                while not self.stopping():
                    await self._wait_change()
            return
        log.exception("queue %s: unexpected error while fetching", self.settings.name)
        await trio.sleep(1.0)

    async def _read(self, count: int) -> list[tuple[str, Mapping[Any, Any]]]:
        sup = self.sup
        if self._reread_own:
            known = len(self.running) + len(self._unacked)
            res = await sup.redis.xreadgroup(
                GROUP, sup.member_id, streams={self.keys.stream: "0"}, count=count + known
            )
            self._reread_own = False
            sup.outage.succeeded()
            own = [
                (_text(e.identifier), e.field_values)
                for e in _entries(res)
                if _text(e.identifier) not in self.running
                and _text(e.identifier) not in self._unacked
                and e.field_values
            ]
            if own:
                return own[:count]
        res = await sup.redis.xreadgroup(
            GROUP,
            sup.member_id,
            streams={self.keys.stream: ">"},
            count=count,
            block=sup.block_ms,
        )
        sup.outage.succeeded()
        return [(_text(e.identifier), e.field_values) for e in _entries(res)]

    async def _burst_done(self) -> bool:
        await self._flush()
        if self.running or self._unacked:
            return False
        redis = self.sup.redis
        length = await redis.xlen(self.keys.stream)
        delayed = await redis.zcard(self.keys.delayed)
        self.drained = length == 0 and delayed == 0
        return self.drained

    # ----------------------------------------------------------------- recovery

    async def _recover(self) -> None:
        sup = self.sup
        if sup.peers_trusted():
            consumers: Any = await sup.redis.xinfo_consumers(self.keys.stream, GROUP)
            for consumer in consumers:
                info = {_text(k): v for k, v in consumer.items()}
                name = _text(info["name"])
                pending = int(info.get("pending", 0))
                if name == sup.member_id:
                    continue
                alive = await sup.redis.exists([member_key(sup.prefix, name)])
                # A missing heartbeat means death only while our own writes flow; ask
                # again after every await, as a stall can begin at any time.
                if alive or not sup.peers_trusted():
                    continue
                if pending > 0 and self._free > 0:
                    # Its heartbeat expired, yet it may have just woken from a stall
                    # and read new entries before renewing it. A dead member touched
                    # its entries last within one interval after its last beat, so
                    # by now they have been idle at least TTL - interval: take those.
                    w = sup.config.worker
                    idle_ms = int(max(0.0, w.heartbeat_ttl - w.heartbeat_interval) * 1000)
                    n = await self._reclaim(owner=name, min_idle_ms=idle_ms)
                    if n:
                        log.warning(
                            "queue %s: reclaimed %d jobs of dead member %s",
                            self.settings.name,
                            n,
                            name,
                        )
                elif pending == 0:
                    await sup.scripts.forget_consumer(keys=[self.keys.stream], args=[GROUP, name])
        if self._free > 0 and sup.peers_trusted():
            # After an outage, live peers' entries look idle until they renew them.
            n = await self._reclaim(
                owner="", min_idle_ms=int(self.settings.visibility_timeout * 1000)
            )
            if n:
                log.warning(
                    "queue %s: reclaimed %d jobs idle past visibility_timeout (%ss)",
                    self.settings.name,
                    n,
                    self.settings.visibility_timeout,
                )

    async def _reclaim(self, *, owner: str, min_idle_ms: int) -> int:
        if self._isolated is not None:
            return 0  # a suspect runs alone: take nothing else until it is done
        sup = self.sup
        res = await sup.scripts.reclaim(
            keys=[self.keys.stream, self.keys.dead],
            args=[
                GROUP,
                sup.member_id,
                min_idle_ms,
                self._free,
                owner,
                self.settings.max_deliveries,
                sup.member_id,
                int(self.settings.result_ttl * 1000),
                min(SUSPECT_AT, self.settings.max_deliveries),
                "1" if self._idle() else "",
            ],
        )
        claimed, dead, lost = res[0], int(res[1]), int(res[2])
        if int(res[3]):
            self._suspects_left = True
        if dead:
            self.stats.dead += dead
            log.error(
                "queue %s: dead-lettered %d jobs delivered more than max_deliveries=%d times",
                self.settings.name,
                dead,
                self.settings.max_deliveries,
            )
        if lost:
            self.stats.lost_by_trim += lost
            log.error(
                "queue %s: %d pending entries had been deleted from the stream by someone "
                "else (trimmed?); their jobs are lost",
                self.settings.name,
                lost,
            )
        for entry_id, flat, deliveries, suspect in claimed:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            if int(suspect):
                self._isolated = _text(entry_id)
                log.warning(
                    "queue %s: entry %s was held by members that vanished, %d deliveries "
                    "in a row (max_deliveries=%d); running it alone",
                    self.settings.name,
                    self._isolated,
                    int(deliveries),
                    self.settings.max_deliveries,
                )
            self._dispatch(_text(entry_id), fields, int(deliveries))
        self.stats.reclaimed += len(claimed)
        return len(claimed)

    def _headroom(self) -> int:
        """How many more entries may be pending here: finished jobs awaiting their
        batched ack count too, so the pending list never exceeds 2 x concurrency."""
        return 2 * self.capacity - len(self.running) - len(self._unacked)

    def _idle(self) -> bool:
        return not self.running and not self._unacked and not self._acks and self._isolated is None

    # ----------------------------------------------------------------- handling

    def _dispatch(self, entry_id: str, fields: Mapping[Any, Any], deliveries: int) -> None:
        scope = trio.CancelScope()
        try:
            env = Envelope.from_entry(entry_id, fields)
        except EnvelopeError as exc:
            env = Envelope(entry_id, entry_id, "", b"", 1, 0)
            self._start(env, scope, self._dead_raw(entry_id, fields, "MalformedEnvelope", str(exc)))
            return
        self._start(env, scope, self._run_job(env, scope, deliveries))

    def _start(self, env: Envelope, scope: trio.CancelScope, coro: Any) -> None:
        self._free -= 1
        self.running[env.entry_id] = _Running(env, scope)
        self.max_seen_in_flight = max(self.max_seen_in_flight, len(self.running))

        async def task() -> None:
            try:
                await coro
            finally:
                del self.running[env.entry_id]
                if env.entry_id == self._isolated:
                    self._isolated = None
                    self._next_recovery = 0.0  # more suspects may be waiting
                    self._signal()
                # The handler slot frees now, so the next read overlaps the batched
                # ack instead of waiting for it; the pending list stays bounded by
                # _headroom (at most 2 x concurrency entries).
                self._free += 1
                self._signal()

        self._handlers.start_soon(task)

    async def _dead_raw(
        self, entry_id: str, fields: Mapping[Any, Any], error_type: str, error: str
    ) -> None:
        text = entry_fields_text(fields)
        extra = {"error_type": error_type, "error": error, "attempts": text.get("attempt", "1")}
        await self._dead_letter(entry_id, {**text, **extra})

    async def _run_job(self, env: Envelope, scope: trio.CancelScope, deliveries: int) -> None:
        handler = self.sup.app.handler_for_name(env.type_name)
        if handler is None:
            await self._dead(
                env,
                "UnknownMessageType",
                f"no handler is registered for message type {env.type_name!r} "
                f"(app {self.sup.app.name!r})",
            )
            return
        try:
            hook = self._hooks.get(env.type_name)
            if hook is None:
                hook = self._hooks[env.type_name] = self.sup.app.converter.get_structure_hook(
                    handler.message_type
                )
            msg = hook(orjson.loads(env.body), handler.message_type)
        except Exception as exc:
            await self._dead(env, "DecodeError", describe_structure_error(exc))
            return
        ctx = JobContext(
            job_id=env.job_id,
            queue=self.settings.name,
            partition=self.keys.partition,
            attempt=env.attempt,
            deliveries=deliveries,
            entry_id=env.entry_id,
            worker=self.sup.member_id,
            epoch=self.epoch,
        )
        outcome: BaseException | None = None
        result: Any = None
        token = _current.set(ctx)
        try:
            with scope:
                timeout = self.settings.timeout
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
        running = self.running.get(env.entry_id)
        if running is not None and running.fenced:
            return
        if running is not None and running.cancelled and scope.cancelled_caught:
            # A client cancelled it: settle it as cancelled, never retry it.
            log.info("job %s on queue %s cancelled on request", env.job_id, self.settings.name)
            doc = outcome_doc("cancelled", attempts=env.attempt, enqueued=env.enqueued_ms)
            self._acks.append((env.entry_id, env.job_id, doc, env.unique))
            self._unacked.add(env.entry_id)
            self._ack_wanted.set()
            return
        if scope.cancelled_caught:
            # Shutdown cancelled the job: leave it pending for redelivery.
            return
        if outcome is None:
            stored = None
            if self.settings.result_ttl > 0:
                try:
                    unstructured = self.sup.app.converter.unstructure(result)
                    stored = outcome_doc(
                        "succeeded",
                        result=unstructured,
                        attempts=env.attempt,
                        enqueued=env.enqueued_ms,
                    )
                except Exception as exc:
                    # An unstorable result is the handler's failure; left to propagate it
                    # would take down the consumer and every other job with it.
                    await self._failed(env, handler, exc)
                    return
            self._acks.append((env.entry_id, env.job_id, stored, env.unique))
            self._unacked.add(env.entry_id)
            self._ack_wanted.set()
            return
        await self._failed(env, handler, outcome)

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
                limiter=self.sup.process_limiter,
            )
        return await trio.to_thread.run_sync(
            handler.fn, arg, limiter=self._thread_limiter, abandon_on_cancel=True
        )

    def _batcher(self, handler: Handler[Any]) -> Batcher:
        batcher = self._batchers.get(handler.type_name)
        if batcher is None:
            assert handler.batch_size is not None

            async def call(msgs: list[Any]) -> Any:
                return await self._invoke(handler, msgs)

            batcher = self._batchers[handler.type_name] = Batcher(
                call,
                batch_size=handler.batch_size,
                flush_interval=handler.flush_interval,
                timeout=self.settings.timeout,
                nursery=self._handlers,
            )
        return batcher

    async def _failed(self, env: Envelope, handler: Handler[Any], exc: BaseException) -> None:
        name = self.settings.name
        if isinstance(exc, Reject):
            await self._dead(env, "Reject", exc.reason)
            return
        if isinstance(exc, trio.TooSlowError):
            error_type, error = (
                "Timeout",
                f"handler ran longer than timeout={self.settings.timeout}s",
            )
        else:
            error_type, error = type(exc).__name__, str(exc)
        if env.attempt > self.settings.retries:
            log.error(
                "job %s (%s) failed on its last attempt %d: %s: %s",
                env.job_id,
                env.type_name,
                env.attempt,
                error_type,
                error,
                exc_info=exc if not isinstance(exc, Retry | trio.TooSlowError) else None,
            )
            await self._dead(env, error_type, error, exc)
            return
        if isinstance(exc, Retry):
            delay = exc.delay
        else:
            delay = self.settings.backoff.delay(env.attempt, random.random())
            log.warning(
                "job %s (%s) attempt %d on queue %s failed, retrying in %.2fs: %s: %s",
                env.job_id,
                env.type_name,
                env.attempt,
                name,
                delay,
                error_type,
                error,
                exc_info=exc if not isinstance(exc, trio.TooSlowError) else None,
            )
        ok = await self._settle(
            "retry",
            self.sup.scripts.retry,
            [self.keys.stream, self.keys.delayed],
            [
                GROUP,
                self.sup.member_id,
                env.entry_id,
                int(delay * 1000),
                env.delayed_payload(env.attempt + 1, f"{error_type}: {error}"),
            ],
        )
        if ok:
            self.stats.retried += 1
            self.sup.poke_scheduler()
        else:
            self._record_fenced(env.entry_id, "retry")

    async def _dead(
        self, env: Envelope, error_type: str, error: str, exc: BaseException | None = None
    ) -> None:
        fields = {
            "id": env.job_id,
            "type": env.type_name,
            "body": env.body.decode("utf-8", "replace"),
            "attempt": str(env.attempt),
            "enqueued": str(env.enqueued_ms),
            "error_type": error_type,
            "error": error,
            "attempts": str(env.attempt),
        }
        if env.key:
            fields["key"] = env.key
        if exc is not None and not isinstance(exc, Retry | Reject | trio.TooSlowError):
            tb = "".join(traceback.format_exception(exc, limit=8))
            fields["traceback"] = tb[-TRACEBACK_CHARS:]
        if error_type in ("DecodeError", "UnknownMessageType", "Reject"):
            log.error(
                "job %s on queue %s dead-lettered: %s: %s",
                env.job_id,
                self.settings.name,
                error_type,
                error,
            )
        await self._dead_letter(env.entry_id, fields)

    async def _dead_letter(self, entry_id: str, fields: dict[str, str]) -> None:
        job_id = fields.get("id", entry_id)
        doc = outcome_doc(
            "failed",
            error_type=fields.get("error_type", ""),
            error=fields.get("error", ""),
            attempts=int(fields.get("attempts", "1") or 1),
            enqueued=int(fields.get("enqueued", "0") or 0),
        )
        fields = {
            **fields,
            "queue": self.settings.name,
            "worker": self.sup.member_id,
            "source_id": entry_id,
        }
        flat: list[str] = []
        for k, v in fields.items():
            flat += [k, v]
        ok = await self._settle(
            "dead-letter",
            self.sup.scripts.dead,
            [self.keys.stream, self.keys.dead, self.keys.result(job_id)],
            [
                GROUP,
                self.sup.member_id,
                entry_id,
                int(self.settings.result_ttl * 1000),
                doc,
                *flat,
            ],
        )
        if ok:
            self.stats.dead += 1
        else:
            self._record_fenced(entry_id, "dead-letter")

    async def _settle(
        self, what: str, script: Any, keys: Sequence[str], args: Sequence[Any]
    ) -> bool:
        async def call() -> Any:
            return await script(keys=keys, args=args)

        res = await self.sup.outage.call(what, call)
        return bool(res)

    def _record_fenced(self, entry_id: str, what: str) -> None:
        self.stats.fenced += 1
        log.warning(
            "queue %s: %s of entry %s refused: another member owns it now "
            "(this worker was paused or cut off past its lease)",
            self.settings.name,
            what,
            entry_id,
        )

    # ----------------------------------------------------------------- acking

    async def _acker(self) -> None:
        while True:
            await self._ack_wanted.wait()
            # Let the other handlers finishing in this scheduling round add their
            # acks, so one script call settles the whole round.
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            self._ack_wanted = trio.Event()
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._acks:
                batch, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
                keys = [self.keys.stream]
                args: list[Any] = [
                    GROUP,
                    self.sup.member_id,
                    int(self.settings.result_ttl * 1000),
                    len(batch),
                ]
                for entry_id, job_id, stored, unique in batch:
                    release = job_id if unique else ""
                    if stored is None:
                        args += [entry_id, release, 0, ""]
                    else:
                        keys.append(self.keys.result(job_id))
                        args += [entry_id, release, len(keys), stored]

                attempts = 0

                async def call(keys: list[str] = keys, args: list[Any] = args) -> Any:
                    nonlocal attempts
                    attempts += 1
                    return await run_script(self.sup.redis, self.sup.scripts.ack, keys, args)

                fenced_raw, gone_raw = await self.sup.outage.call("acknowledge", call)
                fenced = {_text(x) for x in fenced_raw}
                if attempts == 1:
                    # First try: an entry no longer pending was settled by someone else.
                    fenced |= {_text(x) for x in gone_raw}
                # (On a retry it may be our own first call, whose reply was lost.)
                for entry_id, _, _, _ in batch:
                    self._unacked.discard(entry_id)
                    if entry_id in fenced:
                        self._record_fenced(entry_id, "acknowledgement")
                self._signal()
                self.stats.succeeded += len(batch) - len(fenced)
                self.sup.progress(len(batch))

    # ----------------------------------------------------------------- renewing

    async def _renewer(self) -> None:
        # Renew well inside the visibility timeout and at least every few heartbeats,
        # so a job taken over while we were paused is noticed quickly.
        period = min(
            self.settings.visibility_timeout / 3, self.sup.config.worker.heartbeat_interval
        )
        while True:
            with trio.move_on_after(period):
                await self.sup.lapse_event().wait()
            await self.renew()

    async def renew(self) -> None:
        ids = [i for i, r in self.running.items() if not r.fenced]
        for start in range(0, len(ids), ACK_BATCH):
            chunk = [i for i in ids[start : start + ACK_BATCH] if i in self.running]
            markers = [self.keys.cancel_marker(self.running[i].envelope.job_id) for i in chunk]
            try:
                lost, cancel = await self.sup.scripts.touch(
                    keys=[self.keys.stream, *markers], args=[GROUP, self.sup.member_id, *chunk]
                )
            except Exception as exc:
                from trioqueue._connection import is_connection_error

                if is_connection_error(exc):
                    self.sup.outage.failed("renew", exc)
                    return
                raise
            for entry_id in map(_text, lost):
                running = self.running.get(entry_id)
                if running is not None and not running.fenced:
                    running.fenced = True
                    running.scope.cancel()
                    self._record_fenced(entry_id, "renewal")
            for entry_id in map(_text, cancel):
                running = self.running.get(entry_id)
                if running is not None:
                    self.cancel_job(running.envelope.job_id)

    def cancel_job(self, job_id: str) -> bool:
        """Cancel the running job ``job_id`` if this consumer runs it."""
        for running in self.running.values():
            if running.envelope.job_id == job_id and not running.cancelled:
                running.cancelled = True
                running.scope.cancel()
                return True
        return False


def outcome_doc(state: str, **fields: Any) -> bytes:
    """The JSON document stored under a job's result key when it settles."""
    return orjson.dumps({"state": state, "finished": int(time.time() * 1000), **fields})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(res: Any) -> list[Any]:
    if not res:
        return []
    out: list[Any] = []
    for entries in res.values():
        out.extend(entries)
    return out
