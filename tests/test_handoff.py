"""The hand-off from fetcher to runners: back to back when handlers do not wait, and
never an item stuck behind a runner whose handler waits."""

from __future__ import annotations

import trio
import trio.testing

from trioqueue._worker._handoff import Handoff


async def runners(handoff: Handoff[int], n: int, run: object, nursery: trio.Nursery) -> None:
    async def serve(me: int) -> None:
        while True:
            item = await handoff.get()
            await run(me, item)  # type: ignore[operator]

    for i in range(n):
        nursery.start_soon(serve, i)


async def test_items_whose_handlers_do_not_wait_run_in_one_runner() -> None:
    handoff: Handoff[int] = Handoff()
    ran: list[tuple[int, int]] = []

    async def run(me: int, item: int) -> None:
        ran.append((me, item))

    async with trio.open_nursery() as nursery:
        await runners(handoff, 10, run, nursery)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(100):
            handoff.put(i)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [item for _, item in ran] == list(range(100))
    # One runner took them all; at most one more was woken behind it.
    assert len({me for me, _ in ran}) <= 2


async def test_an_item_never_waits_behind_a_blocked_handler() -> None:
    handoff: Handoff[int] = Handoff()
    release = trio.Event()
    started: list[int] = []

    async def run(me: int, item: int) -> None:
        started.append(item)
        await release.wait()

    async with trio.open_nursery() as nursery:
        await runners(handoff, 3, run, nursery)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(3):
            handoff.put(i)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(started) == [0, 1, 2]  # every item started, each in a runner
        handoff.put(3)  # no runner free: it waits for one
        await trio.testing.wait_all_tasks_blocked()
        assert len(handoff) == 1
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(started) == [0, 1, 2, 3]
        nursery.cancel_scope.cancel()


async def test_a_woken_runner_cancelled_before_it_takes_an_item_passes_the_wake_on() -> None:
    handoff: Handoff[int] = Handoff()
    got: list[int] = []

    async def first() -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await handoff.get()
        got.append(-1)  # cancelled: took nothing

    async def second() -> None:
        got.append(await handoff.get())

    scopes: list[trio.CancelScope] = []
    with trio.fail_after(2):  # a lost wake would leave `second` waiting for ever
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            # `first` is cancelled, and before it runs to leave the idle list an item
            # comes and wakes it, the longest idle: it must hand the wake to `second`.
            scopes[0].cancel()
            handoff.put(7)
    assert got == [-1, 7]
