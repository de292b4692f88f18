"""Reading a ``config.toml``: TOML text -> cattrs -> ``Config``, or every key-path error.

cattrs' detailed validation collects every problem at once; ``transform_error``
with our formatter turns ``$.a.b`` paths into dotted TOML paths
(``queues.emails.retries: expected int, got "five"``), and range checks the types
cannot express come after.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import is_mapping, mapping_structure_factory
from cattrs.errors import ForbiddenExtraKeysError

from trioqueue._config import (
    Config,
)
from trioqueue._cron import check_cron, check_timezone
from trioqueue._errors import ConfigError
from trioqueue._keys import check_prefix, check_queue_name

__all__ = ["URL_ENV", "load_config", "parse_config"]

URL_ENV = "TRIOQUEUE_BROKER_URL"
URL_SCHEMES = (
    "redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://",
    "redis+sentinel://", "rediss+sentinel://",
)  # fmt: skip

T = TypeVar("T")


def _strict(kind: type, names: str, accept: Callable[[Any], bool]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        if not accept(value):
            raise ValueError(f"expected {names}, got {_show(value)}")
        return kind(value)

    return hook


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value).lower() if isinstance(value, bool) else repr(value)


def _config_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict(int, "an integer", lambda v: type(v) is int))
    conv.register_structure_hook(
        float, _strict(float, "a number", lambda v: type(v) in (int, float))
    )
    conv.register_structure_hook(str, _strict(str, "a string", lambda v: type(v) is str))
    conv.register_structure_hook(bool, _strict(bool, "true or false", lambda v: type(v) is bool))
    # Without this, a scalar given for a section surfaces as a Python AttributeError.
    conv.register_structure_hook_factory(attrs.has, _tables_only(conv.gen_structure_attrs_fromdict))
    conv.register_structure_hook_factory(
        is_mapping, _tables_only(lambda tp: mapping_structure_factory(tp, conv))
    )
    return conv


def _tables_only(make: Callable[[Any], Callable[[Any, Any], Any]]) -> Callable[[Any], Any]:
    def factory(tp: Any) -> Callable[[Any, Any], Any]:
        inner = make(tp)

        def hook(value: Any, t: Any) -> Any:
            if not isinstance(value, dict):
                raise ValueError(f"expected a table, got {_show(value)}")
            return inner(value, t)

        return hook

    return factory


_CONVERTER = _config_converter()
_PATH_PART = re.compile(r"\['([^']*)'\]|\[(\d+)\]|\.([A-Za-z_][A-Za-z0-9_]*)")


def _dotted(path: str) -> str:
    out = ""
    for key, index, attr in _PATH_PART.findall(path):
        if index:
            out += f"[{index}]"
        else:
            out += ("." if out else "") + (key or attr)
    return out or "(top level)"


def _format_exc(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(sorted(exc.extra_fields))
        return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''} {keys}"
    if isinstance(exc, KeyError):
        return "required key is missing"
    if "not in literal" in str(exc):
        return (
            f"expected one of {_literal_choices(_type)}, got {_show(str(exc).split(' not in')[0])}"
        )
    if isinstance(exc, ValueError | TypeError):
        msg = str(exc)
        if msg.startswith("expected"):
            return msg
        return msg
    return f"{type(exc).__name__}: {exc}"


def _literal_choices(tp: Any) -> str:
    args = getattr(tp, "__args__", ())
    return ", ".join(f'"{a}"' for a in args) if args else "a listed value"


def _problems(exc: BaseException) -> list[str]:
    out = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format_exc):
        msg, _, path = line.rpartition(" @ ")
        dotted = _dotted(path)
        if msg.startswith("unknown key") and dotted != "(top level)":
            # Name the full path of the unknown key, e.g. queues.emails.retires.
            keys = msg.split(" ", 2)[2]
            msg = "unknown key"
            dotted = ", ".join(f"{dotted}.{k}" for k in keys.split(", "))
        elif msg.startswith("unknown key"):
            msg, dotted = "unknown key", msg.split(" ", 2)[2]
        out.append(f"{dotted}: {msg}")
    return out


def _check_ranges(cfg: Config) -> list[str]:
    problems: list[str] = []

    def positive(path: str, value: float | None, *, zero_ok: bool = False) -> None:
        if value is None:
            return
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path}: expected a finite number, got {value}")
        elif value < 0 or (value == 0 and not zero_ok):
            problems.append(
                f"{path}: expected a number {'>= 0' if zero_ok else '> 0'}, got {value}"
            )

    try:
        check_prefix(cfg.broker.prefix)
    except ValueError as exc:
        problems.append(f"broker.prefix: {exc}")
    if cfg.broker.url is not None and not cfg.broker.url.startswith(URL_SCHEMES):
        problems.append(
            "broker.url: expected a redis://, rediss://, unix://, redis+cluster:// or "
            "redis+sentinel:// URL, got "
            f'"{cfg.broker.url.split("://")[0]}://..."'
        )
    positive("broker.connect_timeout", cfg.broker.connect_timeout)
    positive("broker.socket_timeout", cfg.broker.socket_timeout)
    positive("broker.wait_replicas", cfg.broker.wait_replicas, zero_ok=True)
    positive("broker.wait_timeout", cfg.broker.wait_timeout)
    if cfg.broker.wait_timeout >= cfg.broker.socket_timeout:
        problems.append(
            "broker.wait_timeout: must be shorter than broker.socket_timeout "
            f"({cfg.broker.socket_timeout}), got {cfg.broker.wait_timeout}"
        )
    w = cfg.worker
    positive("worker.concurrency", w.concurrency)
    positive("worker.shutdown_grace", w.shutdown_grace, zero_ok=True)
    positive("worker.heartbeat_interval", w.heartbeat_interval)
    positive("worker.heartbeat_ttl", w.heartbeat_ttl)
    positive("worker.block", w.block)
    positive("worker.processes", w.processes)
    positive("worker.workers", w.workers)
    if w.heartbeat_ttl <= w.heartbeat_interval:
        problems.append(
            f"worker.heartbeat_ttl: must be longer than worker.heartbeat_interval "
            f"({w.heartbeat_interval}), got {w.heartbeat_ttl}"
        )
    m = cfg.metrics
    if m.port is not None and not 0 <= m.port <= 65535:
        problems.append(f"metrics.port: expected a port number from 0 to 65535, got {m.port}")
    if not m.host:
        problems.append('metrics.host: expected a host name or address, got ""')
    positive("metrics.refresh", m.refresh)
    positive("metrics.history_hours", m.history_hours, zero_ok=True)
    d = cfg.dashboard
    if not 0 <= d.port <= 65535:
        problems.append(f"dashboard.port: expected a port number from 0 to 65535, got {d.port}")
    if not d.host:
        problems.append('dashboard.host: expected a host name or address, got ""')
    if d.token is not None and len(d.token) < 16:
        problems.append("dashboard.token: expected at least 16 characters")
    positive("dashboard.interval", d.interval)
    if ":" not in cfg.app:
        problems.append(f'app: expected "module:attribute", got "{cfg.app}"')
    for i, s in enumerate(cfg.schedules):
        base = f"schedules[{i}]"
        if (s.cron is None) == (s.every is None):
            problems.append(f"{base}: give exactly one of cron or every")
        if s.cron is not None:
            try:
                check_cron(s.cron)
            except ValueError as exc:
                problems.append(f"{base}.cron: {exc}")
        positive(f"{base}.every", s.every)
        try:
            check_timezone(s.timezone)
        except ValueError as exc:
            problems.append(f"{base}.timezone: {exc}")
    for name, q in cfg.queues.items():
        base = f"queues.{name}"
        try:
            check_queue_name(name)
        except ValueError as exc:
            problems.append(f"{base}: {exc}")
        positive(f"{base}.concurrency", q.concurrency)
        positive(f"{base}.retries", q.retries, zero_ok=True)
        positive(f"{base}.timeout", q.timeout)
        positive(f"{base}.visibility_timeout", q.visibility_timeout)
        positive(f"{base}.max_deliveries", q.max_deliveries)
        positive(f"{base}.max_length", q.max_length)
        positive(f"{base}.max_message_bytes", q.max_message_bytes)
        positive(f"{base}.result_ttl", q.result_ttl, zero_ok=True)
        positive(f"{base}.partitions", q.partitions)
        positive(f"{base}.events_max_length", q.events_max_length)
        if q.partitions is not None and q.partitions > 1024:
            problems.append(f"{base}.partitions: expected at most 1024, got {q.partitions}")
        if q.backoff is not None:
            positive(f"{base}.backoff.initial", q.backoff.initial, zero_ok=True)
            positive(f"{base}.backoff.factor", q.backoff.factor)
            positive(f"{base}.backoff.max", q.backoff.max, zero_ok=True)
            if not 0 <= q.backoff.jitter <= 1:
                problems.append(
                    f"{base}.backoff.jitter: expected a fraction between 0 and 1, "
                    f"got {q.backoff.jitter}"
                )
    return problems


def parse_config(data: Mapping[str, Any], source: Path | None = None) -> Config:
    """Structure a parsed TOML document into a ``Config``; raise ``ConfigError``."""
    try:
        cfg = _CONVERTER.structure(dict(data), Config)
    except Exception as exc:
        # Every problem cattrs found is in the message; its nested exception groups
        # would only print them again, as a tree of tracebacks.
        raise ConfigError(_problems(exc)) from None
    problems = _check_ranges(cfg)
    if problems:
        raise ConfigError(problems)
    env_url = os.environ.get(URL_ENV)
    if env_url:
        cfg = attrs.evolve(cfg, broker=attrs.evolve(cfg.broker, url=env_url))
    ca = cfg.broker.tls_ca_file
    if ca is not None and source is not None and not Path(ca).is_absolute():
        # Relative paths in a config file are relative to that file, like data_dir.
        cfg = attrs.evolve(
            cfg, broker=attrs.evolve(cfg.broker, tls_ca_file=str(source.parent / ca))
        )
    return attrs.evolve(cfg, source=source)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file.

    ``TRIOQUEUE_BROKER_URL`` in the environment overrides ``broker.url``.
    Raises ``ConfigError`` whose message names every offending key path.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read config file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: invalid TOML: {exc}"]) from None
    if "source" in data:
        raise ConfigError(["source: unknown key"])
    return parse_config(data, source=p.resolve())
