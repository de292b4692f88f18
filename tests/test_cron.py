"""Schedules: cron tick computation, and each tick firing once across supervisors."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest
import trio

import trioqueue
from tests.conftest import make_config, wait_for
from trioqueue._config_load import parse_config
from trioqueue._cron import Schedule


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_cron_ticks_follow_the_expression_and_timezone() -> None:
    """Latest and next ticks of a cron schedule, computed in its timezone."""
    s = Schedule(name="s", cron="*/5 * * * *")
    assert s.latest_tick(at("2026-01-01T10:07:30+00:00")) == at("2026-01-01T10:05:00+00:00")
    assert s.latest_tick(at("2026-01-01T10:05:00+00:00")) == at("2026-01-01T10:05:00+00:00")
    assert s.next_tick(at("2026-01-01T10:05:00+00:00")) == at("2026-01-01T10:10:00+00:00")
    riga = Schedule(name="r", cron="0 9 * * *", timezone="Europe/Riga")
    # 09:00 in Riga (UTC+2 in winter) is 07:00 UTC.
    assert riga.next_tick(at("2026-01-01T06:00:00+00:00")) == at("2026-01-01T07:00:00+00:00")


def test_missed_ticks_are_not_replayed() -> None:
    """A tick older than misfire_grace is not fired; only the latest tick ever is."""
    s = Schedule(name="s", cron="0 * * * *", misfire_grace=60)
    assert s.due(at("2026-01-01T10:00:30+00:00")) == at("2026-01-01T10:00:00+00:00")
    assert s.due(at("2026-01-01T10:30:00+00:00")) is None


def test_bad_schedules_are_refused() -> None:
    """Invalid cron expressions and timezones fail early, naming the key path."""
    with pytest.raises(ValueError, match="invalid cron"):
        Schedule(name="x", cron="every minute")
    with pytest.raises(ValueError, match="exactly one"):
        Schedule(name="x")
    with pytest.raises(trioqueue.ConfigError, match=r"schedules\[0\].timezone"):
        parse_config({"app": "a:b", "schedules": [{"queue": "q", "every": 1, "timezone": "X/Y"}]})


@attrs.frozen
class Tick:
    label: str


async def test_each_tick_fires_once_across_two_supervisors(any_config: trioqueue.Config) -> None:
    """Two supervisors, a 0.3 s schedule and a config schedule: no tick runs twice."""
    config = any_config
    fired: list[float] = []
    handled: list[str] = []
    app = trioqueue.App("cron")

    @app.handler(queue="ticks")
    async def on_tick(msg: Tick) -> None:
        handled.append(msg.label)

    @app.cron(every=0.3, name="fast")
    async def fast() -> None:
        fired.append(trio.current_time())

    @app.cron(every=dt.timedelta(seconds=0.3), name="factory")
    def factory() -> Tick:
        return Tick("from-factory")

    cfg = make_config(
        config.broker.url or "",
        config.broker.prefix,
        schedules=[{"queue": "ticks", "every": 0.3, "message": {"label": "from-config"}}],
    )
    one, two = trioqueue.Supervisor(app, cfg), trioqueue.Supervisor(app, cfg)
    async with trio.open_nursery() as nursery:
        # Ticks fire from the moment the first supervisor runs, so the window that
        # bounds them starts there, not once the second one has started too.
        start = trio.current_time()
        await nursery.start(one.run)
        await nursery.start(two.run)
        await wait_for(lambda: len(fired) >= 8)
        elapsed = trio.current_time() - start
        one.shutdown()
        two.shutdown()
    # One firing per 0.3 s tick, not two: allow one tick of slack at each end.
    assert len(fired) <= elapsed / 0.3 + 2
    assert handled.count("from-config") >= 3 and handled.count("from-factory") >= 3
    assert abs(handled.count("from-config") - handled.count("from-factory")) <= 2
