"""The metrics server against a real broker: /metrics after a known history of jobs,
/healthz through a broker outage, and the HTTP edges (404, 405, slow clients)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import trioqueue
from tests.conftest import Server, make_config, running, wait_for
from trioqueue._worker._metrics import Histogram

FAST = trioqueue.Backoff(initial=0.01, factor=1.0, max=0.01, jitter=0.0)
METRICS = {"port": 0, "refresh": 0.1}


@attrs.frozen
class Work:
    kind: str  # ok, flaky (fails its first attempt), bad (always fails), block
    n: int = 0


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, headers, body) of one request to the worker's metrics server."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            raw = bytearray()
            while chunk := await stream.receive_some(65536):
                raw += chunk
    head, _, body = bytes(raw).decode().partition("\r\n\r\n")
    status_line, _, headers = head.partition("\r\n")
    return int(status_line.split(" ")[1]), headers, body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def q(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_metrics_count_each_outcome_and_time_every_run(server: Server, prefix: str) -> None:
    """Three successes, two jobs that succeed on their retry, one dead after its two
    attempts and one cancelled while running: the counters equal that history, the
    histograms hold one run and one wait per attempt, the broker gauges the dead one."""
    app = trioqueue.App("metrics")
    started = trio.Event()

    @app.handler(queue="m", retries=1, backoff=FAST)
    async def handle(msg: Work) -> None:
        attempt = trioqueue.current_job().attempt
        if msg.kind == "bad" or (msg.kind == "flaky" and attempt == 1):
            raise ValueError(f"{msg.kind} attempt {attempt}")
        if msg.kind == "block":
            started.set()
            await trio.sleep_forever()

    config = make_config(server.url, prefix, metrics=METRICS)
    async with running(app, config) as sup, app.connect(server.url, prefix=prefix) as client:
        assert sup.metrics_port is not None
        blocked = await client.send(Work("block"))
        await started.wait()
        await client.send_many([Work("ok", i) for i in range(3)])
        await client.send_many([Work("flaky", 1), Work("flaky", 2), Work("bad")])
        assert await client.cancel(blocked) == "running"

        def value(name: str, **labels: str) -> float | None:
            return sup.registry.get_sample_value(name, {"queue": "m", **labels})

        await wait_for(lambda: value("trioqueue_jobs_total", outcome="dead") == 1)
        await wait_for(lambda: value("trioqueue_jobs_total", outcome="succeeded") == 5)
        await wait_for(lambda: value("trioqueue_jobs_total", outcome="cancelled") == 1)
        await wait_for(lambda: value("trioqueue_queue_dead") == 1)
        status, headers, body = await http_get(sup.metrics_port, "/metrics")
    assert status == 200
    assert "text/plain; version=" in headers
    got = samples(body)
    outcomes = {"succeeded": 5, "failed": 4, "retried": 3, "dead": 1, "cancelled": 1, "fenced": 0}
    for outcome, n in outcomes.items():
        assert got["trioqueue_jobs_total", q(queue="m", outcome=outcome)] == n, outcome
    # Runs: 3 ok + 2 x 2 flaky + 2 bad + 1 cancelled; each came from the stream.
    assert got["trioqueue_job_duration_seconds_count", q(queue="m")] == 10
    assert got["trioqueue_job_duration_seconds_bucket", q(queue="m", le="+Inf")] == 10
    assert got["trioqueue_job_wait_seconds_count", q(queue="m")] == 10
    assert got["trioqueue_job_duration_seconds_sum", q(queue="m")] > 0
    assert got["trioqueue_jobs_running", q(queue="m")] == 0
    assert got["trioqueue_queue_backlog", q(queue="m", partition="0")] == 0
    assert got["trioqueue_queue_delayed", q(queue="m")] == 0
    assert got["trioqueue_queue_dead", q(queue="m")] == 1
    assert got["trioqueue_queue_paused", q(queue="m")] == 0
    assert got["trioqueue_broker_up", ()] == 1
    assert got["trioqueue_broker_outages_total", ()] == 0
    stats = sup.statistics().queues["m"]
    assert (stats.succeeded, stats.failed, stats.cancelled) == (5, 4, 1)


async def test_healthz_follows_the_broker_through_an_outage(private_server: Server) -> None:
    """200 while the broker answers; 503 naming the outage once it is stopped (and
    broker_up 0 at once); 200 again after it returns, with one outage counted."""
    app = trioqueue.App("health")

    @app.handler(queue="h")
    async def handle(msg: Work) -> None:
        pass

    config = make_config(private_server.url, "health", metrics=METRICS)
    async with running(app, config) as sup:
        assert sup.metrics_port is not None
        port = sup.metrics_port
        assert await http_get(port, "/healthz") == (200, _headers(3), "ok\n")

        def up() -> float | None:
            return sup.registry.get_sample_value("trioqueue_broker_up")

        private_server.stop()
        reply: list[Any] = []

        async def unhealthy() -> bool:
            reply[:] = await http_get(port, "/healthz")
            return bool(reply[0] == 503)

        await wait_for(unhealthy)
        assert reply[2].startswith("broker unreachable since "), reply
        assert reply[2].count("\n") == 1
        assert up() == 0
        await trio.to_thread.run_sync(private_server.start)

        async def healthy() -> bool:
            return (await http_get(port, "/healthz"))[0] == 200

        await wait_for(healthy)
        assert up() == 1
        assert sup.registry.get_sample_value("trioqueue_broker_outages_total") == 1


def _headers(body_len: int) -> str:
    return (
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {body_len}\r\n"
        "Connection: close"
    )


async def test_metrics_server_answers_only_its_pages(server: Server, prefix: str) -> None:
    """404 for other paths, 405 for other methods, HEAD without a body, and a client
    that sends nothing does not keep others from being answered."""
    app = trioqueue.App("pages")

    @app.handler(queue="p")
    async def handle(msg: Work) -> None:
        pass

    async with running(app, make_config(server.url, prefix, metrics=METRICS)) as sup:
        port = sup.metrics_port
        assert port is not None
        idle = await trio.open_tcp_stream("127.0.0.1", port)  # sends nothing
        async with idle:
            assert (await http_get(port, "/nope"))[0] == 404
            assert (await http_get(port, "/metrics", "POST"))[0] == 405
            status, headers, body = await http_get(port, "/healthz", "HEAD")
            assert (status, body) == (200, "")
            assert "Content-Length: 3" in headers
            assert (await http_get(port, "/metrics?x=1"))[0] == 200


async def test_metrics_port_in_use_fails_the_start_with_the_key(
    server: Server, prefix: str
) -> None:
    """A port that cannot be bound names metrics.port; the worker does not run."""
    app = trioqueue.App("busy")

    @app.handler(queue="b")
    async def handle(msg: Work) -> None:
        pass

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        config = make_config(server.url, prefix, metrics={"port": port})
        with pytest.raises(trioqueue.ConfigError, match=r"^metrics\.port: cannot listen on 127"):
            await trioqueue.Supervisor(app, config).run()
    finally:
        await listeners[0].aclose()


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    """A value on a bound counts in that bucket (Prometheus ``le``)."""
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(v)
    assert h.buckets() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert h.total == pytest.approx(3.65)


async def test_no_histograms_without_a_metrics_server(server: Server, prefix: str) -> None:
    """Without [metrics] port no server runs and the hot path observes nothing, but the
    registry still counts outcomes."""
    app = trioqueue.App("plain")
    done = trio.Event()

    @app.handler(queue="n")
    async def handle(msg: Work) -> None:
        done.set()

    async with running(app, make_config(server.url, prefix)) as sup:
        async with app.connect(server.url, prefix=prefix) as client:
            await client.send(Work("ok"))
        await done.wait()
        labels = {"queue": "n", "outcome": "succeeded"}
        await wait_for(lambda: sup.registry.get_sample_value("trioqueue_jobs_total", labels))
        assert sup.metrics_port is None
        assert sup.registry.get_sample_value("trioqueue_job_duration_seconds_count") is None
