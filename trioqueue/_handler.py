"""A registered handler: the function, its message type and queue, and how it runs."""

from __future__ import annotations

import datetime as dt
import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import attrs

from trioqueue._client import Client
from trioqueue._config import QueueOptions
from trioqueue._job import Job

if TYPE_CHECKING:
    # Annotations only: importing it would import redis-py with every App.
    from trioqueue._sync_client import SyncClient

__all__ = ["Handler"]

M = TypeVar("M")
RunIn = Literal["loop", "thread", "process"]


@attrs.frozen
class Handler(Generic[M]):
    """A registered handler: the function, its message type and its queue.

    Calling it calls the function, so decorated functions stay unit-testable.
    """

    fn: Callable[[M], Any]
    message_type: type[M]
    type_name: str
    queue: str
    return_type: Any
    is_async: bool
    options: QueueOptions
    run_in: RunIn = "loop"
    batch_size: int | None = None
    flush_interval: float = 1.0

    def __call__(self, msg: M) -> Any:
        return self.fn(msg)

    @overload
    def send(
        self,
        client: SyncClient,
        msg: M,
        *,
        job_id: str | None = None,
        key: str | None = None,
        delay: float | dt.timedelta | None = None,
        at: dt.datetime | None = None,
    ) -> Job: ...

    @overload
    def send(
        self,
        client: Client,
        msg: M,
        *,
        job_id: str | None = None,
        key: str | None = None,
        delay: float | dt.timedelta | None = None,
        at: dt.datetime | None = None,
    ) -> Coroutine[Any, Any, Job]: ...

    def send(
        self,
        client: Client | SyncClient,
        msg: M,
        *,
        job_id: str | None = None,
        key: str | None = None,
        delay: float | dt.timedelta | None = None,
        at: dt.datetime | None = None,
    ) -> Job | Coroutine[Any, Any, Job]:
        """Send ``msg`` to this handler's queue, type-checked against its message type:
        ``await send_welcome_email.send(client, msg)`` with a Trio client, or
        ``send_welcome_email.send(sync_client, msg)`` with a synchronous one."""
        return client.send(msg, queue=self.queue, job_id=job_id, key=key, delay=delay, at=at)

    @property
    def batched(self) -> bool:
        """Whether the handler takes ``list[M]`` and is called with batches."""
        return self.batch_size is not None

    @property
    def returns_value(self) -> bool:
        """Whether the handler's return annotation promises a result worth storing."""
        return self.return_type not in (None, type(None), inspect.Signature.empty)


def message_type_of(fn: Callable[..., Any], batched: bool) -> tuple[type[Any], Any]:
    """The message type (an attrs class) and return annotation of handler ``fn``, or a
    ``TypeError`` saying how to annotate it."""
    sig = inspect.signature(fn)
    params = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    name = getattr(fn, "__qualname__", repr(fn))
    if len(params) != 1:
        raise TypeError(f"handler {name} must take exactly one argument: the message")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise TypeError(f"handler {name}: cannot resolve annotations: {exc}") from None
    msg_type = hints.get(params[0].name)
    is_list = typing.get_origin(msg_type) is list
    if is_list and not batched:
        raise TypeError(f"handler {name} takes a list: give batch_size=... to batch it")
    if batched:
        if not is_list:
            raise TypeError(f"batch handler {name} must take list[MyMessage]")
        msg_type = typing.get_args(msg_type)[0] if typing.get_args(msg_type) else None
    if msg_type is None or not isinstance(msg_type, type):
        raise TypeError(
            f"handler {name}: annotate the message parameter with an attrs class, "
            f"e.g. `async def {getattr(fn, '__name__', 'handle')}(msg: MyMessage) -> None`"
        )
    if not attrs.has(msg_type):
        raise TypeError(
            f"handler {name}: message type {msg_type.__qualname__} must be an attrs class"
        )
    return msg_type, hints.get("return", inspect.Signature.empty)
