"""The signal listener (CLI only): the first SIGINT/SIGTERM drains, the second cancels.

Cancellation: cancelled with the other loops once the consumers drained.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio

__all__ = ["listen_for_signals"]

log = logging.getLogger("trioqueue.worker")


async def listen_for_signals(
    *, stopping: Callable[[], bool], shutdown: Callable[[], None], cancel: Callable[[], None]
) -> None:
    """Call ``shutdown`` at the first signal, ``cancel`` at the next, until cancelled."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if not stopping():
                log.info(
                    "received %s: graceful shutdown (send again to cancel at once)",
                    signal.Signals(signum).name,
                )
                shutdown()
            else:
                cancel()
