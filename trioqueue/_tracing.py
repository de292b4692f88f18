"""OpenTelemetry tracing: a PRODUCER span per send call, a CONSUMER span per job (or
per batch), the W3C trace context carried in the envelope between them.

Nothing here does anything unless ``opentelemetry-api`` is installed (the ``otel``
extra) and the application set a tracer provider: ``tracer()`` answers ``None``
otherwise, and the callers skip every span, field and attribute. That check is one
global read and an ``isinstance`` per send call and per job.

The context travels as the W3C ``traceparent`` and ``tracestate`` fields of the stream
entry (docs/reference/wire-format.md), written by the send script, carried through
retries, delays and dead-letter re-sends. The W3C propagator is used whatever global
propagator the application set: the envelope's format is part of the wire contract,
readable by consumers in other languages.

A job's span is the child of its producer span, so both share one trace; a batch's
span links to every message's producer span, and is the child of their trace only
when they all share one. Attribute names follow the messaging semantic conventions;
``trioqueue.job.*`` names carry what they have no name for.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _PROPAGATOR: TraceContextTextMapPropagator | None = TraceContextTextMapPropagator()
except ImportError:  # the `otel` extra is not installed
    _PROPAGATOR = None

from trioqueue._keys import GROUP

__all__ = ["NO_TRACE", "JobSpan", "Trace", "attach", "current", "detach", "producer", "tracer"]

Trace = tuple[str, str]
"""A message's trace context: (``traceparent``, ``tracestate``), ``""`` when absent."""

NO_TRACE: Trace = ("", "")
SYSTEM = "trioqueue"

_cached: tuple[Any, Any] = (None, None)  # (provider, its tracer)
_MISSING = object()
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_NO_PROVIDER: tuple[type, ...] = ()
if _PROPAGATOR is not None:
    _NO_PROVIDER = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def tracer() -> trace.Tracer | None:
    """The tracer of the application's tracer provider; None when there is none (the
    extra is not installed, or no provider was set)."""
    global _cached
    if _PROPAGATOR is None:
        return None
    # The provider set_tracer_provider() stored: get_tracer_provider() would first look
    # for OTEL_PYTHON_TRACER_PROVIDER in os.environ, 2 µs per job on the hot path. Read
    # through the public call when the API keeps it elsewhere, or the variable may name
    # a provider yet to be loaded.
    provider: Any = getattr(trace, "_TRACER_PROVIDER", _MISSING)
    if provider is _MISSING or (provider is None and _PROVIDER_FROM_ENV):
        provider = trace.get_tracer_provider()
    if provider is None or type(provider) in _NO_PROVIDER:
        return None
    if _cached[0] is not provider:
        _cached = (provider, provider.get_tracer("trioqueue", _version()))
    tracer_: trace.Tracer = _cached[1]
    return tracer_


def _version() -> str:
    # The installed distribution's: the package's __init__ imports this module.
    try:
        return importlib.metadata.version("trioqueue")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _carrier(trace_: Trace) -> dict[str, str]:
    parent, state = trace_
    carrier = {"traceparent": parent}
    if state:
        carrier["tracestate"] = state
    return carrier


def _extract(trace_: Trace) -> otel_context.Context | None:
    """The producer's context carried as ``trace_``; None when the message has none."""
    if not trace_[0] or _PROPAGATOR is None:
        return None
    ctx = _PROPAGATOR.extract(_carrier(trace_), context=otel_context.Context())
    # A malformed field (a producer elsewhere got it wrong): the job starts a trace.
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def current() -> Trace:
    """The W3C context of the current span, to hand to a child process (``NO_TRACE``
    without a tracer provider or a current span)."""
    if tracer() is None:
        return NO_TRACE
    carrier: dict[str, str] = {}
    assert _PROPAGATOR is not None
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


def attach(trace_: Trace) -> contextvars.Token[otel_context.Context] | None:
    """Make the context ``trace_`` current (in a child process); None when there is
    none to attach. Undo with ``detach``."""
    parent = _extract(trace_)
    return None if parent is None else otel_context.attach(parent)


def detach(token: contextvars.Token[otel_context.Context]) -> None:
    """Undo an ``attach``."""
    otel_context.detach(token)


def _failed(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_attribute("error.type", type(exc).__qualname__)
    span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")


@contextmanager
def producer(
    tracer_: trace.Tracer, queue: str, partition: int, job_ids: Sequence[str], *, due: int
) -> Iterator[Trace]:
    """A PRODUCER span around one send-script call; yields the context its messages
    carry. The span is not made current: sends are generators (the sync and the Trio
    client drive them), and a context attached there could leak past a yield."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": queue,
        "messaging.destination.partition.id": str(partition),
    }
    if len(job_ids) == 1:
        attributes["messaging.message.id"] = job_ids[0]
    else:
        attributes["messaging.batch.message_count"] = len(job_ids)
    if due:
        attributes["trioqueue.job.delayed"] = True
    span = tracer_.start_span(f"send {queue}", kind=trace.SpanKind.PRODUCER, attributes=attributes)
    try:
        carrier: dict[str, str] = {}
        assert _PROPAGATOR is not None  # a tracer exists only with the extra
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        yield carrier.get("traceparent", ""), carrier.get("tracestate", "")
    except Exception as exc:
        _failed(span, exc)
        raise
    finally:
        span.end()


class JobSpan:
    """The CONSUMER span of one job's attempt, or of one batch, current while its
    handler runs so that the handler's own spans nest under it."""

    def __init__(
        self,
        tracer_: trace.Tracer,
        queue: str,
        partition: int,
        attributes: dict[str, Any],
        traces: Sequence[Trace],
        *,
        batch: bool,
    ) -> None:
        parents = [ctx for ctx in map(_extract, traces) if ctx is not None]
        links = []
        parent = None
        if parents:
            spans = [trace.get_current_span(ctx).get_span_context() for ctx in parents]
            if not batch or (len({s.trace_id for s in spans}) == 1 and len(spans) == len(traces)):
                parent = parents[0]
            if batch:
                links = [trace.Link(s) for s in spans]
        attributes.update(
            {
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": queue,
                "messaging.destination.partition.id": str(partition),
                "messaging.consumer.group.name": GROUP,
            }
        )
        self._span = tracer_.start_span(
            f"process {queue}",
            context=parent if parent is not None else otel_context.Context(),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    @classmethod
    def job(
        cls,
        tracer_: trace.Tracer,
        queue: str,
        partition: int,
        *,
        job_id: str,
        type_name: str,
        attempt: int,
        trace_: Trace,
    ) -> JobSpan:
        """The span of one attempt of one job, the child of its producer span."""
        attributes = {
            "messaging.message.id": job_id,
            "trioqueue.job.type": type_name,
            "trioqueue.job.attempt": attempt,
        }
        return cls(tracer_, queue, partition, attributes, [trace_], batch=False)

    @classmethod
    def batch(
        cls, tracer_: trace.Tracer, queue: str, partition: int, traces: Sequence[Trace]
    ) -> JobSpan:
        """The span of one batch handler call, linked to each message's producer."""
        attributes = {"messaging.batch.message_count": len(traces)}
        return cls(tracer_, queue, partition, attributes, traces, batch=True)

    def end(self, error: BaseException | None) -> None:
        """End the span (recording ``error`` if the handler failed); the caller's
        context is current again."""
        otel_context.detach(self._token)
        if error is not None:
            _failed(self._span, error)
        self._span.end()
