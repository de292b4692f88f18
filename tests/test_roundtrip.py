"""Typed messages go through the broker into their handlers."""

from __future__ import annotations

import attrs
import trio

import trioqueue
from tests.conftest import wait_for


@attrs.frozen
class Greet:
    name: str
    times: int = 1


@attrs.frozen
class Nested:
    greets: list[Greet]
    tag: str | None = None


def make_app(seen: list[object]) -> trioqueue.App:
    app = trioqueue.App("test")

    @app.handler(queue="greet", concurrency=4)
    async def greet(msg: Greet) -> None:
        seen.append(msg)

    @app.handler(queue="nested")
    async def nested(msg: Nested) -> int:
        seen.append(msg)
        return len(msg.greets)

    return app


async def test_send_then_handler_receives_typed_instance(any_config: trioqueue.Config) -> None:
    config = any_config
    seen: list[object] = []
    app = make_app(seen)
    async with app.connect(config.broker.url or "", prefix=config.broker.prefix) as client:
        job = await client.send(Greet("ada", 2))
        await client.send(Nested([Greet("a"), Greet("b", 3)], tag="x"))
    assert job.queue == "greet" and len(job.id) == 16
    sup = trioqueue.Supervisor(app, config)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await wait_for(lambda: len(seen) == 2)
        sup.shutdown()
    assert Greet("ada", 2) in seen
    assert Nested([Greet("a"), Greet("b", 3)], tag="x") in seen
    assert all(type(m) in (Greet, Nested) for m in seen)
