"""One worker process of ``run --workers N``: a normal supervisor, steered by its parent.

    run_child                      the child's root nursery
    ├── Supervisor.run             the worker, exactly as ``trioqueue run`` runs it
    ├── parent commands            ``stop`` drains, ``cancel`` stops at once; end of
    │                              file (the parent died) stops at once
    └── signal listener            a signal sent to this process itself (an operator's
                                   ``kill``): the first drains, the second cancels

Cancellation: the watchers are cancelled as soon as the supervisor returns.

Error handling: an error of the supervisor propagates (the CLI reports it to the
parent as fatal or not, then exits with it).

Resource handling: the link's socket is closed with the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from trioqueue._parent._link import ParentLink
from trioqueue._worker._signals import listen_for_signals

if TYPE_CHECKING:
    from trioqueue._worker._supervisor import Supervisor

__all__ = ["run_child"]


async def run_child(sup: Supervisor, link: ParentLink) -> None:
    """Run ``sup`` until it stops, then (in burst mode) report what it drained."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_obey, sup, link, nursery.cancel_scope)
        nursery.start_soon(_signals, sup)
        await nursery.start(_supervise, sup, nursery.cancel_scope)
        link.report("started", member=sup.member_id, metrics_port=sup.metrics_port)
    if sup.burst:
        stats = sup.statistics().queues.values()
        link.report(
            "drained",
            succeeded=sum(s.succeeded for s in stats),
            retried=sum(s.retried for s in stats),
            dead=sum(s.dead for s in stats),
        )


async def _supervise(
    sup: Supervisor, scope: trio.CancelScope, *, task_status: trio.TaskStatus[None]
) -> None:
    await sup.run(task_status=task_status)
    scope.cancel()


async def _obey(sup: Supervisor, link: ParentLink, scope: trio.CancelScope) -> None:
    async for command in link.commands():
        if command == "stop":
            sup.shutdown()
        elif command == "cancel":
            sup.cancel()
    link.parent_gone()
    # The whole child, not only the supervisor's root scope: it may still be starting.
    scope.cancel()


async def _signals(sup: Supervisor) -> None:
    # Counted here, not read from the supervisor's state: after a ``stop`` from the
    # parent, an operator's first signal to this process still only drains.
    signalled = False

    def stopping() -> bool:
        return signalled

    def shutdown() -> None:
        nonlocal signalled
        signalled = True
        sup.shutdown()

    await listen_for_signals(stopping=stopping, shutdown=shutdown, cancel=sup.cancel)
