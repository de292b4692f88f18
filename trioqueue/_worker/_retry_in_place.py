"""Retries on ordered queues: in place, holding the key.

A failed attempt that will be retried keeps its pending entry and its key (later
jobs of the key wait), sleeps the backoff and runs again in this task, so order
holds across retries. ``Reject`` and the last attempt's failure are settled as on a
shared queue (dead-lettered).

Cancellation: the backoff sleep is cancelled with the job (a lost lease, a drain);
the entry then stays pending and the partition's next owner retries it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import attrs
import trio

from trioqueue._config import QueueSettings
from trioqueue._envelope import Envelope
from trioqueue._errors import Reject, Retry
from trioqueue._worker._inflight import InFlight
from trioqueue._worker._settle import Settler
from trioqueue._worker._stats import ConsumerStats

__all__ = ["RetryInPlace"]

log = logging.getLogger("trioqueue.worker.ordered")


class RetryInPlace:
    """The failure policy of an ordered partition's runner."""

    def __init__(
        self,
        settings: QueueSettings,
        inflight: InFlight,
        stats: ConsumerStats,
        settler: Settler,
        *,
        stopping: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._inflight = inflight
        self._stats = stats
        self._settler = settler
        self._stopping = stopping

    async def __call__(self, env: Envelope, exc: BaseException, deliveries: int) -> Envelope | None:
        """The next attempt of ``env``, to run in place; or None once settled (as a
        shared queue would: dead-lettered) or left pending."""
        s = self._settings
        if isinstance(exc, Reject) or env.attempt > s.retries:
            await self._settler.fail(env, exc)
            return None
        self._settler.failed_in_place(env, exc)
        if isinstance(exc, Retry):
            delay = exc.delay
        else:
            delay = s.backoff.delay(env.attempt, random.random())
            log.warning(
                "job %s (%s) attempt %d on ordered queue %s failed, retrying in %.2fs "
                "(its key waits): %s: %s",
                env.job_id,
                env.type_name,
                env.attempt,
                s.name,
                delay,
                type(exc).__name__,
                exc,
            )
        await trio.sleep(delay)
        running = self._inflight.running.get(env.entry_id)
        if running is None or running.fenced or self._stopping():
            return None  # left pending: the next owner (or our next start) retries it
        self._settler.retrying_in_place(env)
        return attrs.evolve(env, attempt=env.attempt + 1)
