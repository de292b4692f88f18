"""Job state as reported by `client.status`, through its life."""

from __future__ import annotations

import attrs
import trio

import trioqueue
from tests.conftest import wait_for


@attrs.frozen
class Step:
    n: int


def make_app(gate: trio.Event) -> trioqueue.App:
    app = trioqueue.App("status")

    @app.handler(queue="steps", retries=1, backoff=trioqueue.Backoff(initial=30.0, jitter=0.0))
    async def step(msg: Step) -> None:
        if msg.n == 1:
            await gate.wait()
        if msg.n == 2:
            raise ValueError("step two fails")

    return app


async def test_status_follows_a_job_through_its_states(any_config: trioqueue.Config) -> None:
    """queued → active → succeeded; a failure → retrying with its error; cancelled."""
    config = any_config
    gate = trio.Event()
    app = make_app(gate)
    url, prefix = config.broker.url or "", config.broker.prefix
    async with app.connect(url, prefix=prefix) as client:
        slow = await client.send(Step(1))
        failing = await client.send(Step(2))
        later = await client.send(Step(3), delay=60)
        assert (await client.status(slow)).state == "queued"
        assert (await client.status(later)).state == "scheduled"
        assert (await client.status("nope", queue="steps")).state == "unknown"
        sup = trioqueue.Supervisor(app, config)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)

            async def is_state(job: trioqueue.Job, state: str) -> bool:
                return (await client.status(job)).state == state

            await wait_for(lambda: is_state(slow, "active"))
            active = await client.status(slow)
            assert active.worker == sup.member_id and active.started_at is not None
            await wait_for(lambda: is_state(failing, "retrying"))
            retrying = await client.status(failing)
            assert retrying.attempts == 2
            assert retrying.error == "ValueError: step two fails"
            assert retrying.due_at is not None
            gate.set()
            await wait_for(lambda: is_state(slow, "succeeded"))
            done = await client.status(slow)
            assert done.attempts == 1 and done.finished_at is not None
            assert await client.cancel(later) == "removed"
            assert (await client.status(later)).state == "cancelled"
            sup.shutdown()
