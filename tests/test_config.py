"""Config parsing and validation: every error names its key path; pure, no server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

import trioqueue
from trioqueue._config_load import URL_ENV, parse_config


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(trioqueue.ConfigError) as info:
        parse_config(data)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def with_app(**rest: Any) -> dict[str, Any]:
    return {"app": "tasks:app", **rest}


def test_minimal_config_gets_defaults() -> None:
    """Only `app` is required; every other section falls back to its defaults."""
    cfg = parse_config({"app": "tasks:app"})
    assert cfg.broker == trioqueue.BrokerConfig()
    assert cfg.worker == trioqueue.WorkerConfig()
    assert cfg.queues == {}
    assert cfg.queue_options("anything") == trioqueue.QueueOptions()


def test_full_config_is_structured() -> None:
    """Every section structures into its attrs class, nested backoff included."""
    cfg = parse_config(
        with_app(
            broker={"url": "redis://127.0.0.1:1/0", "prefix": "pre", "appendfsync": "always"},
            worker={"concurrency": 7, "shutdown_grace": 0, "processes": 2},
            queues={
                "emails": {
                    "retries": 0,
                    "timeout": 2,
                    "max_length": 10,
                    "backoff": {"initial": 0.5, "factor": 3, "max": 9, "jitter": 0},
                }
            },
        )
    )
    assert cfg.broker.url == "redis://127.0.0.1:1/0"
    assert cfg.broker.prefix == "pre"
    assert cfg.broker.appendfsync == "always"
    assert (cfg.worker.concurrency, cfg.worker.shutdown_grace, cfg.worker.processes) == (7, 0, 2)
    emails = cfg.queues["emails"]
    assert emails.retries == 0
    assert emails.timeout == 2.0 and type(emails.timeout) is float
    assert emails.max_length == 10
    assert emails.backoff == trioqueue.Backoff(initial=0.5, factor=3.0, max=9.0, jitter=0.0)


def test_wrong_type_names_the_key_path() -> None:
    """A string where an integer belongs is reported with its dotted path and the value."""
    problems = problems_of(with_app(queues={"emails": {"retries": "five"}}))
    assert problems == ['queues.emails.retries: expected an integer, got "five"']


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_app(worker={"concurrency": 1.5}), "worker.concurrency: expected an integer, got 1.5"),
        (
            with_app(worker={"concurrency": True}),
            "worker.concurrency: expected an integer, got true",
        ),
        (
            with_app(queues={"q": {"timeout": "1s"}}),
            'queues.q.timeout: expected a number, got "1s"',
        ),
        (
            with_app(queues={"q": {"timeout": False}}),
            "queues.q.timeout: expected a number, got false",
        ),
        (with_app(broker={"prefix": 5}), "broker.prefix: expected a string, got 5"),
        ({"app": 5}, "app: expected a string, got 5"),
        (
            with_app(queues={"q": {"backoff": {"initial": "x"}}}),
            'queues.q.backoff.initial: expected a number, got "x"',
        ),
    ],
)
def test_scalar_type_errors(data: dict[str, Any], expected: str) -> None:
    """Booleans are not numbers, floats are not integers, and the path goes to the leaf."""
    assert problems_of(data) == [expected]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_app(broker="redis://x"), 'broker: expected a table, got "redis://x"'),
        (with_app(worker=[1]), "worker: expected a table, got an array"),
        (with_app(queues="emails"), 'queues: expected a table, got "emails"'),
        (with_app(queues={"emails": 5}), "queues.emails: expected a table, got 5"),
        (
            with_app(queues={"emails": {"backoff": 2}}),
            "queues.emails.backoff: expected a table, got 2",
        ),
    ],
)
def test_value_where_a_table_belongs(data: dict[str, Any], expected: str) -> None:
    """A scalar or array given for a section is reported as such, not as a Python error."""
    assert problems_of(data) == [expected]


def test_unknown_keys_are_rejected_with_their_paths() -> None:
    """Typos anywhere are named with their full path, all of them at once."""
    problems = problems_of(
        with_app(
            bogus=1,
            broker={"prefx": "a"},
            worker={"concurency": 2},
            queues={"emails": {"retires": 3, "backoff": {"inital": 1}}},
        )
    )
    assert sorted(problems) == sorted(
        [
            "bogus: unknown key",
            "broker.prefx: unknown key",
            "worker.concurency: unknown key",
            "queues.emails.retires: unknown key",
            "queues.emails.backoff.inital: unknown key",
        ]
    )


def test_source_key_is_not_accepted_from_the_file(tmp_path: Path) -> None:
    """`source` is an internal field: a file cannot set it."""
    path = tmp_path / "config.toml"
    path.write_text('app = "tasks:app"\nsource = "/etc/passwd"\n')
    with pytest.raises(trioqueue.ConfigError, match=r"^source: unknown key$"):
        trioqueue.load_config(path)


def test_literal_choices_are_listed() -> None:
    """A value outside a fixed set of choices lists the accepted ones."""
    problems = problems_of(with_app(broker={"appendfsync": "sometimes"}))
    assert problems == [
        'broker.appendfsync: expected one of "always", "everysec", "no", got "sometimes"'
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_app(worker={"concurrency": 0}), "worker.concurrency: expected a number > 0, got 0"),
        (
            with_app(worker={"shutdown_grace": -1}),
            "worker.shutdown_grace: expected a number >= 0, got -1.0",
        ),
        (
            with_app(queues={"q": {"retries": -1}}),
            "queues.q.retries: expected a number >= 0, got -1",
        ),
        (
            with_app(queues={"q": {"timeout": 0}}),
            "queues.q.timeout: expected a number > 0, got 0.0",
        ),
        (
            with_app(queues={"q": {"max_deliveries": 0}}),
            "queues.q.max_deliveries: expected a number > 0, got 0",
        ),
        (
            with_app(queues={"q": {"max_length": -5}}),
            "queues.q.max_length: expected a number > 0, got -5",
        ),
        (
            with_app(queues={"q": {"timeout": float("nan")}}),
            "queues.q.timeout: expected a finite number, got nan",
        ),
        (
            with_app(broker={"connect_timeout": float("inf")}),
            "broker.connect_timeout: expected a finite number, got inf",
        ),
        (
            with_app(queues={"q": {"backoff": {"jitter": 1.5}}}),
            "queues.q.backoff.jitter: expected a fraction between 0 and 1, got 1.5",
        ),
        (
            with_app(worker={"heartbeat_interval": 2, "heartbeat_ttl": 2}),
            "worker.heartbeat_ttl: must be longer than worker.heartbeat_interval (2.0), got 2.0",
        ),
    ],
)
def test_ranges(data: dict[str, Any], expected: str) -> None:
    """Out-of-range numbers name the key, the bound and the value given."""
    assert problems_of(data) == [expected]


def test_range_problems_are_all_reported() -> None:
    """Several range problems come back together, one line each."""
    problems = problems_of(
        with_app(worker={"concurrency": 0, "block": 0}, queues={"q": {"retries": -2}})
    )
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {
        "worker.concurrency",
        "worker.block",
        "queues.q.retries",
    }


def test_bad_names_and_urls() -> None:
    """Queue names, prefixes, app references and URL schemes are checked."""
    assert problems_of(with_app(queues={"bad name": {}}))[0].startswith(
        "queues.bad name: invalid queue name 'bad name'"
    )
    assert problems_of(with_app(broker={"prefix": "a b"}))[0].startswith(
        "broker.prefix: invalid key prefix 'a b'"
    )
    assert problems_of({"app": "tasks"}) == ['app: expected "module:attribute", got "tasks"']
    assert problems_of(with_app(broker={"url": "http://user:secret@host/"})) == [
        "broker.url: expected a redis://, rediss://, unix://, redis+cluster:// or "
        'redis+sentinel:// URL, got "http://..."'
    ]


def test_missing_app() -> None:
    """`app` is required and its absence is named."""
    assert problems_of({"broker": {"prefix": "x"}}) == ["app: required key is missing"]


def test_env_url_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRIOQUEUE_BROKER_URL wins over broker.url and over its absence."""
    monkeypatch.setenv(URL_ENV, "redis://10.0.0.1:7000/2")
    assert parse_config(with_app(broker={"url": "redis://127.0.0.1:1/0"})).broker.url == (
        "redis://10.0.0.1:7000/2"
    )
    assert parse_config(with_app()).broker.url == "redis://10.0.0.1:7000/2"
    monkeypatch.setenv(URL_ENV, "")
    assert parse_config(with_app()).broker.url is None


def test_load_config_from_file(tmp_path: Path) -> None:
    """A TOML file loads, and records where it came from for relative paths."""
    path = tmp_path / "config.toml"
    path.write_text(
        'app = "tasks:app"\n[broker]\nprefix = "p"\n[queues.emails]\nretries = 1\n',
        encoding="utf-8",
    )
    cfg = trioqueue.load_config(path)
    assert cfg.source == path.resolve()
    assert cfg.base_dir == tmp_path.resolve()
    assert cfg.queues["emails"].retries == 1


def test_load_config_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the path, not an OSError."""
    path = tmp_path / "nope.toml"
    with pytest.raises(trioqueue.ConfigError) as info:
        trioqueue.load_config(path)
    assert str(info.value) == f"{path}: cannot read config file: No such file or directory"


def test_load_config_invalid_toml(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    path = tmp_path / "config.toml"
    path.write_text('app = "tasks:app"\n[worker\nconcurrency = 3\n', encoding="utf-8")
    with pytest.raises(trioqueue.ConfigError) as info:
        trioqueue.load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 2" in message


def test_load_config_reports_key_paths(tmp_path: Path) -> None:
    """Errors from a file read name the key path like parse_config does."""
    path = tmp_path / "config.toml"
    path.write_text('app = "tasks:app"\n[queues.emails]\nretries = "five"\n', encoding="utf-8")
    with pytest.raises(trioqueue.ConfigError) as info:
        trioqueue.load_config(path)
    assert info.value.problems == ['queues.emails.retries: expected an integer, got "five"']


@attrs.frozen
class Msg:
    n: int


def test_settings_layers_defaults_decorator_config() -> None:
    """Queue settings resolve as defaults < decorator < config file, per field."""
    app = trioqueue.App("layers")

    @app.handler(queue="emails", retries=7, timeout=3.0, max_length=50)
    async def handle(msg: Msg) -> None:
        pass

    cfg = parse_config(
        with_app(worker={"concurrency": 5}, queues={"emails": {"retries": 1, "max_length": 9}})
    )
    got = app.queue_settings("emails", cfg)
    assert got.retries == 1
    assert got.max_length == 9
    assert got.timeout == 3.0
    assert got.concurrency == 5
    assert got.visibility_timeout == 60.0
    bare = app.queue_settings("emails")
    assert (bare.retries, bare.max_length, bare.concurrency) == (7, 50, 32)


def test_backoff_schedule() -> None:
    """Delays grow by `factor` from `initial`, are capped at `max`, and start at attempt 1."""
    b = trioqueue.Backoff(initial=1.0, factor=2.0, max=10.0, jitter=0.0)
    assert [b.delay(n) for n in range(0, 7)] == [1.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.delay(5000) == 10.0


def test_backoff_jitter_bounds() -> None:
    """Jitter spreads a delay uniformly over +-jitter around its base, never below zero."""
    b = trioqueue.Backoff(initial=4.0, factor=1.0, max=100.0, jitter=0.25)
    assert b.delay(1, rand=0.0) == pytest.approx(3.0)
    assert b.delay(1, rand=0.5) == pytest.approx(4.0)
    assert b.delay(1, rand=0.999999) == pytest.approx(5.0, abs=1e-4)
    full = trioqueue.Backoff(initial=1.0, factor=1.0, max=1.0, jitter=1.0)
    assert full.delay(3, rand=0.0) == 0.0
    assert trioqueue.Backoff(initial=0.0).delay(5, rand=0.9) == 0.0


def test_metrics_table_is_structured_and_checked() -> None:
    """``[metrics]``: no server by default; each bad value is named by its key path."""
    assert parse_config(with_app()).metrics == trioqueue.MetricsConfig(None, "127.0.0.1", 15.0)
    cfg = parse_config(with_app(metrics={"port": 9464, "host": "0.0.0.0", "refresh": 5}))
    assert cfg.metrics == trioqueue.MetricsConfig(port=9464, host="0.0.0.0", refresh=5.0)
    assert problems_of(with_app(metrics={"port": "9464"})) == [
        'metrics.port: expected an integer, got "9464"'
    ]
    assert sorted(problems_of(with_app(metrics={"port": 70000, "refresh": 0, "hots": "x"}))) == [
        "metrics.hots: unknown key"
    ]
    assert sorted(problems_of(with_app(metrics={"port": 70000, "refresh": 0}))) == [
        "metrics.port: expected a port number from 0 to 65535, got 70000",
        "metrics.refresh: expected a number > 0, got 0.0",
    ]


def test_dashboard_table_is_structured_and_checked() -> None:
    """``[dashboard]``: loopback on 8080 every 5 s by default; bad values by key path,
    and the token never shows in the config's repr."""
    assert parse_config(with_app()).dashboard == trioqueue.DashboardConfig()
    assert trioqueue.DashboardConfig().host == "127.0.0.1"
    cfg = parse_config(with_app(dashboard={"port": 9000, "token": "s" * 20, "interval": 2}))
    assert (cfg.dashboard.port, cfg.dashboard.interval) == (9000, 2.0)
    assert "s" * 20 not in repr(cfg)
    assert sorted(problems_of(with_app(dashboard={"port": 70000, "interval": 0}))) == [
        "dashboard.interval: expected a number > 0, got 0.0",
        "dashboard.port: expected a port number from 0 to 65535, got 70000",
    ]
    assert problems_of(with_app(dashboard={"token": "short"})) == [
        "dashboard.token: expected at least 16 characters"
    ]
