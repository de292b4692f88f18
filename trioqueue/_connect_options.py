"""What ``App.connect`` and ``App.connect_sync`` connect with: keyword arguments over
the config's ``[broker]`` table over the defaults, resolved in one place so the two
clients cannot disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from trioqueue._config import BrokerConfig
from trioqueue._core._base import Durability
from trioqueue._keys import check_prefix

if TYPE_CHECKING:
    from trioqueue._config import Config

__all__ = ["ConnectOptions", "connect_options"]


@attrs.frozen
class ConnectOptions:
    """Resolved connection settings of a client."""

    prefix: str
    connect_timeout: float
    socket_timeout: float
    tls_ca_file: str | None
    durability: Durability


def connect_options(
    config: Config | None,
    *,
    prefix: str | None,
    connect_timeout: float | None,
    socket_timeout: float | None,
    tls_ca_file: str | None,
    wait_replicas: int | None,
    wait_timeout: float | None,
    wait_local_fsync: bool | None,
) -> ConnectOptions:
    """Each setting from its keyword argument if given, else from ``config.broker``,
    else the default; ``ValueError`` for a value out of range."""
    b = config.broker if config is not None else BrokerConfig()
    durability = Durability(
        replicas=b.wait_replicas if wait_replicas is None else wait_replicas,
        timeout=b.wait_timeout if wait_timeout is None else wait_timeout,
        local_fsync=b.wait_local_fsync if wait_local_fsync is None else wait_local_fsync,
    )
    options = ConnectOptions(
        prefix=check_prefix(prefix or b.prefix),
        connect_timeout=b.connect_timeout if connect_timeout is None else connect_timeout,
        socket_timeout=b.socket_timeout if socket_timeout is None else socket_timeout,
        tls_ca_file=b.tls_ca_file if tls_ca_file is None else tls_ca_file,
        durability=durability,
    )
    if durability.replicas < 0:
        raise ValueError(f"wait_replicas must be >= 0, got {durability.replicas}")
    if durability.waits and not 0 < durability.timeout < options.socket_timeout:
        raise ValueError(
            f"wait_timeout must be > 0 and shorter than socket_timeout "
            f"({options.socket_timeout}), got {durability.timeout}"
        )
    return options
