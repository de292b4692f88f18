"""OpenTelemetry tracing: producer and consumer spans, against the real server, collected
with the SDK's in-memory exporter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import attrs
import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.test.globals_test import reset_trace_globals
from opentelemetry.trace import SpanKind, StatusCode

import trioqueue
from tests.conftest import running, wait_for
from tests.handlers_for_processes import WhoAmI, whoami
from trioqueue import _tracing
from trioqueue._envelope import Envelope
from trioqueue._keys import PartitionKeys

NO_WAIT = trioqueue.Backoff(initial=0.01, factor=1.0, max=0.01, jitter=0.0)


@attrs.frozen
class Greet:
    name: str


@attrs.frozen
class Shout:
    name: str


@attrs.frozen
class Row:
    n: int


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A global SDK tracer provider for this test only, exporting to memory."""
    reset_trace_globals()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    reset_trace_globals()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def ctx(span: ReadableSpan) -> trace.SpanContext:
    assert span.context is not None
    return span.context


def ids(context: trace.SpanContext | None) -> tuple[int, int]:
    """(trace id, span id): a context read from an envelope is remote, one made here is
    not, and SpanContext equality tells them apart."""
    assert context is not None
    return context.trace_id, context.span_id


def traceparent(span: ReadableSpan) -> str:
    c = ctx(span)
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


def url(config: trioqueue.Config) -> str:
    return config.broker.url or ""


async def run_until(app: trioqueue.App, config: trioqueue.Config, done: object) -> None:
    async with running(app, config):
        await wait_for(done)


async def test_send_and_job_share_one_trace(
    config: trioqueue.Config, spans: InMemorySpanExporter, redis: object
) -> None:
    """The send's PRODUCER span is the parent of the job's CONSUMER span, whose context
    the handler's own spans (awaited and in a thread) nest under; the sync client's
    sends are traced the same way."""
    app = trioqueue.App("tracing")
    mine = trace.get_tracer("tests")

    @app.handler(queue="greets")
    async def greet(msg: Greet) -> None:
        with mine.start_as_current_span(f"inner {msg.name}"):
            pass

    @app.handler(queue="greets")
    def shout(msg: Shout) -> None:
        with mine.start_as_current_span(f"inner {msg.name}"):
            pass

    with mine.start_as_current_span("request"):
        async with app.connect(url(config), prefix=config.broker.prefix) as client:
            job = await client.send(Greet("ada"))

        def send_sync() -> trioqueue.Job:
            with app.connect_sync(url(config), prefix=config.broker.prefix) as sync:
                return sync.send(Shout("bob"))

        # A thread runs in a copy of this context: the request span is current there.
        shouted = await trio.to_thread.run_sync(send_sync)

    (request,) = named(spans, "request")
    sends = named(spans, "send greets")
    assert len(sends) == 2
    for span in sends:
        assert span.kind is SpanKind.PRODUCER
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "trioqueue"
        assert span.parent == ctx(request)
        assert ctx(span).trace_id == ctx(request).trace_id
    assert [s.attributes["messaging.message.id"] for s in sends] == [job.id, shouted.id]
    assert dict(sends[0].attributes or {}) == {
        "messaging.system": "trioqueue",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "greets",
        "messaging.destination.partition.id": "0",
        "messaging.message.id": job.id,
    }
    # The envelope carries the producer span's W3C context.
    stream = PartitionKeys(config.broker.prefix, "greets").stream
    entries = await redis.xrange(stream)  # type: ignore[attr-defined]
    assert [e.field_values[b"traceparent"].decode() for e in entries] == [
        traceparent(s) for s in sends
    ]

    await run_until(app, config, lambda: len(named(spans, "process greets")) == 2)
    processed = {s.attributes["messaging.message.id"]: s for s in named(spans, "process greets")}
    for produced in sends:
        span = processed[produced.attributes["messaging.message.id"]]  # type: ignore[index]
        assert span.kind is SpanKind.CONSUMER
        assert ids(span.parent) == ids(ctx(produced))
        assert ctx(span).trace_id == ctx(request).trace_id
        assert span.status.status_code is StatusCode.UNSET
        attributes = dict(span.attributes or {})
        assert attributes["messaging.system"] == "trioqueue"
        assert attributes["messaging.destination.name"] == "greets"
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["trioqueue.job.attempt"] == 1
    assert processed[job.id].attributes["trioqueue.job.type"] == "Greet"  # type: ignore[index]
    for name, job_id in (("ada", job.id), ("bob", shouted.id)):
        (inner,) = named(spans, f"inner {name}")
        assert inner.parent == ctx(processed[job_id])


async def test_failing_job_spans_through_retries_and_a_dead_letter_resend(
    config: trioqueue.Config, spans: InMemorySpanExporter, redis: object
) -> None:
    """Each attempt gets a span in the send's trace, recording the exception; the
    context survives the delayed set (a retry), the dead letter and its re-send."""
    app = trioqueue.App("tracing")

    @app.handler(queue="flaky", retries=1, backoff=NO_WAIT)
    async def fail(msg: Greet) -> None:
        raise ValueError(f"no {msg.name}")

    async with app.connect(url(config), prefix=config.broker.prefix) as client:
        job = await client.send(Greet("carol"))
        (produced,) = named(spans, "send flaky")
        keys = PartitionKeys(config.broker.prefix, "flaky")

        async def dead() -> int:
            return int(await redis.xlen(keys.dead))  # type: ignore[attr-defined]

        await run_until(app, config, lambda: len(named(spans, "process flaky")) == 2)
        await wait_for(lambda: dead())
        (letter,) = await redis.xrange(keys.dead)  # type: ignore[attr-defined]
        assert letter.field_values[b"traceparent"].decode() == traceparent(produced)
        assert await client.retry_dead_letters("flaky") == (1, 0)
        # The re-sent job fails its two attempts again and is dead once more.
        await run_until(app, config, lambda: len(named(spans, "process flaky")) == 4)
        await wait_for(lambda: dead())

    attempts = named(spans, "process flaky")
    assert [s.attributes["trioqueue.job.attempt"] for s in attempts] == [1, 2, 1, 2]
    for span in attempts:
        assert ids(span.parent) == ids(ctx(produced))
        assert span.attributes["messaging.message.id"] == job.id  # type: ignore[index]
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "ValueError"  # type: ignore[index]
        (event,) = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "no carol"


async def test_batch_span_links_every_message(
    config: trioqueue.Config, spans: InMemorySpanExporter
) -> None:
    """One span per batch call, linked to each message's producer span: the child of
    their trace when they share one; a failed batch records its error."""
    app = trioqueue.App("tracing")
    seen: list[list[int]] = []

    @app.handler(queue="rows", retries=0, batch_size=3, flush_interval=5)
    async def save(rows: list[Row]) -> None:
        seen.append([r.n for r in rows])
        if any(r.n < 0 for r in rows):
            raise trioqueue.BatchFailed(failed=[i for i, r in enumerate(rows) if r.n < 0])

    mine = trace.get_tracer("tests")
    async with app.connect(url(config), prefix=config.broker.prefix) as client:
        with mine.start_as_current_span("request"):
            for n in (1, 2, 3):
                await client.send(Row(n))
        await run_until(app, config, lambda: len(named(spans, "process rows")) == 1)
        # Sent outside any span: three traces, one per send.
        for n in (4, -5, 6):
            await client.send(Row(n))
        await run_until(app, config, lambda: len(named(spans, "process rows")) == 2)
    assert seen == [[1, 2, 3], [4, -5, 6]]

    (request,) = named(spans, "request")
    sends = named(spans, "send rows")
    assert len(sends) == 6
    one_trace, many = named(spans, "process rows")
    for span, produced in ((one_trace, sends[:3]), (many, sends[3:])):
        assert span.kind is SpanKind.CONSUMER
        assert span.attributes["messaging.batch.message_count"] == 3  # type: ignore[index]
        assert [ids(link.context) for link in span.links] == [ids(ctx(s)) for s in produced]
    assert ids(one_trace.parent) == ids(ctx(sends[0]))
    assert ctx(one_trace).trace_id == ctx(request).trace_id
    assert one_trace.status.status_code is StatusCode.UNSET
    assert len({ctx(s).trace_id for s in sends[3:]}) == 3
    assert many.parent is None
    assert ctx(many).trace_id not in {ctx(s).trace_id for s in sends}
    assert many.status.status_code is StatusCode.ERROR
    assert many.attributes["error.type"] == "BatchFailed"  # type: ignore[index]


async def test_a_process_handler_runs_as_its_job_under_its_span(
    config: trioqueue.Config, spans: InMemorySpanExporter
) -> None:
    """run_in="process": the child sees current_job() and the job's span as current."""
    app = trioqueue.App("tracing")
    app.handler(queue="procs", run_in="process")(whoami)
    async with app.connect(url(config), prefix=config.broker.prefix) as client:
        job = await client.send(WhoAmI(1))
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            seen = await client.result(job, timeout=30)
            sup.shutdown()
    (span,) = named(spans, "process procs")
    job_id, attempt, pid, trace_id, span_id = seen
    assert (job_id, attempt) == (job.id, 1)
    assert pid != os.getpid()
    assert (int(trace_id, 16), int(span_id, 16)) == ids(ctx(span))


async def test_a_traceparent_from_a_plain_xadd_is_the_jobs_parent(
    config: trioqueue.Config, spans: InMemorySpanExporter, redis: object
) -> None:
    """A producer in another language traces its send by writing the W3C field."""
    app = trioqueue.App("tracing")

    @app.handler(queue="greets")
    async def greet(msg: Greet) -> None:
        pass

    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    fields = {"type": "Greet", "body": '{"name":"x"}', "traceparent": f"00-{trace_id}-{span_id}-01"}
    stream = PartitionKeys(config.broker.prefix, "greets").stream
    await redis.xadd(stream, fields)  # type: ignore[attr-defined]
    await run_until(app, config, lambda: named(spans, "process greets"))
    (span,) = named(spans, "process greets")
    assert span.parent is not None
    assert (span.parent.trace_id, span.parent.span_id) == (int(trace_id, 16), int(span_id, 16))
    assert span.parent.is_remote


async def test_without_a_tracer_provider_nothing_is_traced(
    config: trioqueue.Config, redis: object
) -> None:
    """The API alone (no provider set) adds no span and no envelope field."""
    reset_trace_globals()
    assert _tracing.tracer() is None
    app = trioqueue.App("tracing")
    ran: list[str] = []

    @app.handler(queue="greets")
    async def greet(msg: Greet) -> None:
        ran.append(msg.name)
        assert not trace.get_current_span().get_span_context().is_valid

    async with app.connect(url(config), prefix=config.broker.prefix) as client:
        await client.send(Greet("dan"))
    stream = PartitionKeys(config.broker.prefix, "greets").stream
    (entry,) = await redis.xrange(stream)  # type: ignore[attr-defined]
    assert set(entry.field_values) == {b"id", b"type", b"body"}
    await run_until(app, config, lambda: ran == ["dan"])


def test_without_the_extra_jobs_still_run(config: trioqueue.Config) -> None:
    """With opentelemetry not importable, trioqueue imports, sends and runs jobs."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        import attrs, trio, trioqueue
        from trioqueue import _tracing
        from tests.conftest import make_config

        @attrs.frozen
        class Ping:
            n: int

        app = trioqueue.App("no-otel")
        ran = []

        @app.handler(queue="pings")
        async def ping(msg: Ping) -> None:
            ran.append(msg.n)

        async def main() -> None:
            assert _tracing.tracer() is None
            config = make_config(sys.argv[1], sys.argv[2])
            async with app.connect(sys.argv[1], prefix=sys.argv[2]) as client:
                await client.send(Ping(7))
            async with trio.open_nursery() as nursery:
                await nursery.start(trioqueue.Supervisor(app, config, burst=True).run)
            assert ran == [7], ran
            assert "opentelemetry.trace" not in sys.modules
            print("ran", ran)

        trio.run(main)
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", script, url(config), config.broker.prefix],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran [7]"


def test_the_trace_context_survives_the_delayed_set() -> None:
    """A retry's delayed-set document keeps the envelope's W3C fields."""
    fields = {b"type": b"Greet", b"body": b"{}", b"traceparent": b"00-ab-cd-01",
              b"tracestate": b"k=v"}  # fmt: skip
    env = Envelope.from_entry("1-0", fields)
    again = Envelope.from_delayed(env.delayed_payload(2, "ValueError: x"))
    assert (again.traceparent, again.tracestate, again.attempt) == ("00-ab-cd-01", "k=v", 2)


def test_a_provider_named_by_the_environment_is_used() -> None:
    """OTEL_PYTHON_TRACER_PROVIDER alone (no set_tracer_provider call) turns tracing on."""
    script = "from trioqueue import _tracing; print(type(_tracing.tracer()).__module__)"
    env = {**os.environ, "OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "opentelemetry.sdk.trace"


def test_the_public_provider_lookup_when_the_api_keeps_it_elsewhere(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path reads the API's module global; without it, get_tracer_provider()."""
    provider = trace.get_tracer_provider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.delattr(trace, "_TRACER_PROVIDER")
    tracer = _tracing.tracer()
    assert tracer is not None
    tracer.start_span("probe").end()
    assert [s.name for s in spans.get_finished_spans()] == ["probe"]


def test_a_malformed_traceparent_starts_a_trace_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    """A field no W3C parser accepts neither breaks the job's span nor becomes its
    parent."""
    tracer = _tracing.tracer()
    assert tracer is not None
    bad = _tracing.JobSpan.job(
        tracer, "q", 0, job_id="j", type_name="T", attempt=1, trace_=("not-a-trace", "")
    )
    bad.end(None)
    (span,) = spans.get_finished_spans()
    assert span.parent is None and ctx(span).is_valid
