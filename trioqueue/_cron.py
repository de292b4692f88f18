"""Schedules: cron expressions (via cronsim) and fixed intervals, fired once per tick.

Every supervisor computes the latest due tick from the *server's* clock and claims it
with a compare-and-set script (``_lua/cron_claim.lua``) on ``<prefix>:cron:<name>``;
only the claimant fires it. Ticks missed while no supervisor ran are not replayed: at
most the latest tick is fired, and only if it is younger than ``misfire_grace`` seconds.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Callable
from typing import Any

import attrs
from cronsim import CronSim, CronSimError

__all__ = ["Schedule"]

MISFIRE_GRACE = 60.0


def check_cron(expr: str) -> None:
    """Raise ``ValueError`` if ``expr`` is not a valid 5-field cron expression."""
    try:
        CronSim(expr, dt.datetime.now(dt.UTC))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None


def check_timezone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}") from None


@attrs.frozen
class Schedule:
    """One schedule: when (``cron`` in ``timezone``, or ``every`` seconds) and what
    (``target``: a function with no arguments, or a factory returning a message to
    send; or a fixed ``message``)."""

    name: str
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    target: Callable[[], Any] | None = None
    message: Any = None
    queue: str | None = None
    misfire_grace: float = MISFIRE_GRACE

    def __attrs_post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of cron or every")
        if self.cron is not None:
            check_cron(self.cron)
        if self.every is not None and not (self.every > 0 and math.isfinite(self.every)):
            raise ValueError(f"schedule {self.name!r}: every must be > 0 seconds")
        check_timezone(self.timezone)

    def latest_tick(self, now: dt.datetime) -> dt.datetime:
        """The last tick at or before ``now`` (an aware datetime)."""
        if self.every is not None:
            ts = math.floor(now.timestamp() / self.every) * self.every
            return dt.datetime.fromtimestamp(ts, tz=dt.UTC)
        assert self.cron is not None
        local = now.astimezone(check_timezone(self.timezone)) + dt.timedelta(microseconds=1)
        tick: dt.datetime = next(CronSim(self.cron, local, reverse=True))
        return tick

    def next_tick(self, now: dt.datetime) -> dt.datetime:
        """The first tick after ``now``."""
        if self.every is not None:
            ts = (math.floor(now.timestamp() / self.every) + 1) * self.every
            return dt.datetime.fromtimestamp(ts, tz=dt.UTC)
        assert self.cron is not None
        local = now.astimezone(check_timezone(self.timezone))
        tick: dt.datetime = next(CronSim(self.cron, local))
        return tick

    def due(self, now: dt.datetime) -> dt.datetime | None:
        """The tick to fire at ``now``, unless it is older than ``misfire_grace``."""
        tick = self.latest_tick(now)
        if (now - tick).total_seconds() > self.misfire_grace:
            return None
        return tick


def config_schedules(app: Any, schedules: list[Any]) -> list[Schedule]:
    """Turn ``[[schedules]]`` entries into ``Schedule`` values, checking each message
    against its handler's type. Raises ``ConfigError`` naming the key path."""
    from trioqueue._converter import describe_structure_error
    from trioqueue._errors import ConfigError

    out: list[Schedule] = []
    problems: list[str] = []
    for i, s in enumerate(schedules):
        base = f"schedules[{i}]"
        handlers = [h for h in app.handlers.values() if h.queue == s.queue]
        if s.type is not None:
            handlers = [h for h in handlers if h.type_name == s.type]
        if len(handlers) != 1:
            what = "no handler" if not handlers else "several message types; set type"
            problems.append(f"{base}.queue: {what} for queue {s.queue!r}")
            continue
        try:
            msg = app.converter.structure(s.message, handlers[0].message_type)
        except Exception as exc:
            problems.append(f"{base}.message: {describe_structure_error(exc)}")
            continue
        name = s.name or f"{s.queue}:{handlers[0].type_name}:{s.cron or s.every}"
        out.append(
            Schedule(
                name=name,
                cron=s.cron,
                every=s.every,
                timezone=s.timezone,
                message=msg,
                queue=s.queue,
            )
        )
    if problems:
        raise ConfigError(problems)
    return out
