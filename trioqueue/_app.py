"""The App: a registry of message types, their handlers and their queues."""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs
import cattrs

from trioqueue._client import Client, open_client
from trioqueue._config import Backoff, Config, QueueOptions, QueueSettings
from trioqueue._connect_options import connect_options
from trioqueue._converter import default_converter, type_name_of
from trioqueue._cron import Schedule
from trioqueue._errors import UnknownMessageType
from trioqueue._handler import Handler, RunIn, message_type_of
from trioqueue._keys import check_queue_name

if TYPE_CHECKING:
    from trioqueue._sync_client import SyncClient

__all__ = ["App"]

M = TypeVar("M")
F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_QUEUE = "default"
# Read from the field: on a slotted attrs class, QueueSettings.concurrency is a descriptor.
_DEFAULT_CONCURRENCY = QueueSettings(name="").concurrency


class App:
    """A trioqueue application: register handlers on it, connect clients, run workers.

    ``name`` identifies the app in logs and in member records.
    ``converter`` converts message bodies; it defaults to cattrs' orjson preset.
    """

    def __init__(self, name: str, *, converter: cattrs.Converter | None = None) -> None:
        self.name = name
        self.converter = converter if converter is not None else default_converter()
        self._by_name: dict[str, Handler[Any]] = {}
        self._by_type: dict[type, Handler[Any]] = {}
        self._queues: dict[str, QueueOptions] = {}
        self._schedules: list[Schedule] = []

    def handler(
        self,
        queue: str = DEFAULT_QUEUE,
        *,
        concurrency: int | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        visibility_timeout: float | None = None,
        max_deliveries: int | None = None,
        max_length: int | None = None,
        max_message_bytes: int | None = None,
        result_ttl: float | None = None,
        backoff: Backoff | None = None,
        name: str | None = None,
        partitions: int | None = None,
        ordered: bool | None = None,
        events: bool | None = None,
        events_max_length: int | None = None,
        run_in: Literal["thread", "process"] | None = None,
        batch_size: int | None = None,
        flush_interval: float = 1.0,
    ) -> Callable[[Callable[[M], Any]], Handler[M]]:
        """Register the decorated function as the handler of its message type.

        The message type is the annotation of the function's only parameter; it must
        be an attrs class. ``name`` is the type's name on the wire (default: the
        class name). Queue settings given here are defaults the config file can
        override; handlers sharing a queue must not disagree on them. ``events``
        turns on the queue's job event stream (see ``Client.events``).
        An ``async def`` runs in the worker's Trio loop; a plain ``def`` runs in a
        worker thread, or with ``run_in="process"`` in a process pool (``[worker]
        processes``; the function, message and result must be picklable, and a
        timeout or cancel kills the child's work).

        With ``batch_size`` the function takes ``list[MyMessage]`` and is called with
        up to ``batch_size`` messages, or fewer once ``flush_interval`` seconds passed
        since the first arrived. Raise ``BatchFailed(failed=[...])`` to fail only some.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be > 0")
        if batch_size is not None and concurrency is None:
            # Room for one batch running while the next one fills.
            concurrency = 2 * batch_size
        check_queue_name(queue)
        opts = QueueOptions(
            concurrency=concurrency,
            retries=retries,
            timeout=timeout,
            visibility_timeout=visibility_timeout,
            max_deliveries=max_deliveries,
            max_length=max_length,
            max_message_bytes=max_message_bytes,
            result_ttl=result_ttl,
            backoff=backoff,
            partitions=partitions,
            ordered=ordered,
            events=events,
            events_max_length=events_max_length,
        )

        def register(fn: Callable[[M], Any]) -> Handler[M]:
            msg_type, return_type = message_type_of(fn, batch_size is not None)
            is_async = inspect.iscoroutinefunction(fn)
            where: RunIn = "loop" if is_async else "thread"
            if run_in is not None:
                if is_async:
                    raise TypeError(
                        f"handler {fn.__qualname__}: run_in applies to plain `def` handlers"
                    )
                where = run_in
            type_name = name or type_name_of(msg_type)
            if type_name in self._by_name:
                raise ValueError(
                    f"message type name {type_name!r} is already registered "
                    f"(by {self._by_name[type_name].fn.__qualname__}); pass name=..."
                )
            if msg_type in self._by_type:
                raise ValueError(f"message type {msg_type.__qualname__} already has a handler")
            self._queues[queue] = _merge(queue, self._queues.get(queue), opts)
            handler = Handler(
                fn=fn,
                message_type=msg_type,
                type_name=type_name,
                queue=queue,
                return_type=return_type,
                is_async=is_async,
                options=opts,
                run_in=where,
                batch_size=batch_size,
                flush_interval=flush_interval,
            )
            self._by_name[type_name] = handler
            self._by_type[msg_type] = handler
            return handler

        return register

    def cron(
        self,
        expr: str | None = None,
        *,
        every: float | dt.timedelta | None = None,
        timezone: str = "UTC",
        name: str | None = None,
    ) -> Callable[[F], F]:
        """Run the decorated function on a schedule: a cron expression (``"*/5 * * * *"``,
        in ``timezone``) or a fixed interval (``every=`` seconds or a timedelta).

        The function takes no arguments. If it returns a message, that message is sent
        (routed like ``client.send``, idempotently per tick) — the durable way to do
        scheduled work. Each tick fires once across any number of supervisors; ticks
        missed while none ran are not replayed (see docs/how-to/schedules.md).
        """
        seconds = every.total_seconds() if isinstance(every, dt.timedelta) else every

        def register(fn: F) -> F:
            params = [
                p
                for p in inspect.signature(fn).parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            if params:
                raise TypeError(f"scheduled function {fn.__qualname__} must take no arguments")
            schedule = Schedule(
                name=name or fn.__qualname__,
                cron=expr,
                every=seconds,
                timezone=timezone,
                target=fn,
            )
            if any(s.name == schedule.name for s in self._schedules):
                raise ValueError(f"a schedule named {schedule.name!r} already exists; pass name=")
            self._schedules.append(schedule)
            return fn

        return register

    @property
    def schedules(self) -> list[Schedule]:
        """Schedules registered with ``@app.cron``."""
        return list(self._schedules)

    @property
    def handlers(self) -> dict[str, Handler[Any]]:
        """Handlers by wire type name."""
        return dict(self._by_name)

    @property
    def queues(self) -> list[str]:
        """Names of the queues that have at least one handler."""
        return list(self._queues)

    def handler_for_type(self, msg_type: type) -> Handler[Any] | None:
        return self._by_type.get(msg_type)

    def handler_for_name(self, type_name: str) -> Handler[Any] | None:
        return self._by_name.get(type_name)

    def route(self, msg: object, queue: str | None) -> tuple[str, str]:
        """The (queue, wire type name) a message is sent as."""
        handler = self._by_type.get(type(msg))
        if handler is not None:
            return (queue or handler.queue, handler.type_name)
        if queue is None:
            raise UnknownMessageType(
                f"no handler registered for {type(msg).__qualname__} on app {self.name!r}; "
                "register one with @app.handler or pass queue=..."
            )
        return (check_queue_name(queue), type_name_of(type(msg)))

    def settings(self, config: Config | None = None) -> dict[str, QueueSettings]:
        """Resolved settings of every queue: defaults < decorator < config file."""
        concurrency = config.worker.concurrency if config else _DEFAULT_CONCURRENCY
        out = {}
        for queue, opts in self._queues.items():
            layers = [opts]
            if config is not None:
                layers.append(config.queue_options(queue))
            out[queue] = QueueSettings.resolve(queue, *layers, concurrency=concurrency)
        return out

    def queue_settings(self, queue: str, config: Config | None = None) -> QueueSettings:
        """Resolved settings of one queue (defaults if no handler uses it)."""
        got = self.settings(config).get(queue)
        if got is not None:
            return got
        layers = [config.queue_options(queue)] if config is not None else []
        concurrency = config.worker.concurrency if config else _DEFAULT_CONCURRENCY
        return QueueSettings.resolve(queue, *layers, concurrency=concurrency)

    def connect_sync(
        self,
        url: str,
        *,
        prefix: str | None = None,
        config: Config | None = None,
        connect_timeout: float | None = None,
        socket_timeout: float | None = None,
        tls_ca_file: str | None = None,
        wait_replicas: int | None = None,
        wait_timeout: float | None = None,
        wait_local_fsync: bool | None = None,
    ) -> SyncClient:
        """Connect a synchronous client (redis-py), for code that is not async.

        ``with app.connect_sync(url) as client: client.send(msg)``. Same URLs, settings,
        wire format, scripts and errors as ``connect``.
        """
        # Here, not at import: it imports redis-py, which only the sync client needs.
        from trioqueue._sync_client import SyncClient

        o = connect_options(
            config,
            prefix=prefix,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            tls_ca_file=tls_ca_file,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            wait_local_fsync=wait_local_fsync,
        )
        d = o.durability
        return SyncClient(
            self,
            url,
            prefix=o.prefix,
            config=config,
            connect_timeout=o.connect_timeout,
            socket_timeout=o.socket_timeout,
            tls_ca_file=o.tls_ca_file,
            wait_replicas=d.replicas,
            wait_timeout=d.timeout,
            wait_local_fsync=d.local_fsync,
        )

    def connect(
        self,
        url: str,
        *,
        prefix: str | None = None,
        config: Config | None = None,
        connect_timeout: float | None = None,
        socket_timeout: float | None = None,
        tls_ca_file: str | None = None,
        wait_replicas: int | None = None,
        wait_timeout: float | None = None,
        wait_local_fsync: bool | None = None,
    ) -> AbstractAsyncContextManager[Client]:
        """Connect a Trio client: ``async with app.connect(url) as client: ...``.

        ``url`` is ``redis://[user:password@]host:port/db``, ``rediss://...``,
        ``unix:///path/to/socket?db=0`` or, through Sentinel,
        ``redis+sentinel://host:port[,host:port...]/SERVICE[?db=N]``. Fails fast
        with ``BrokerError`` if the broker cannot be reached or rejects the
        credentials.

        Every other setting comes from ``config.broker`` when a ``config`` is given
        (``prefix``, timeouts, ``tls_ca_file``, ``wait_*``), and a keyword argument
        given here overrides it. With ``wait_replicas=N`` a send returns only once N
        replicas have it (within ``wait_timeout`` seconds; ``wait_local_fsync=True``
        also waits for the primary's AOF fsync), else raises ``NotReplicated``.
        """
        o = connect_options(
            config,
            prefix=prefix,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            tls_ca_file=tls_ca_file,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            wait_local_fsync=wait_local_fsync,
        )
        return open_client(self, url, options=o, config=config)


def _merge(queue: str, old: QueueOptions | None, new: QueueOptions) -> QueueOptions:
    if old is None:
        return new
    merged: dict[str, Any] = {}
    for field in attrs.fields(QueueOptions):
        a, b = getattr(old, field.name), getattr(new, field.name)
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"handlers on queue {queue!r} disagree on {field.name} ({a!r} vs {b!r}); "
                "set it once, or in the config file"
            )
        merged[field.name] = a if a is not None else b
    return QueueOptions(**merged)
