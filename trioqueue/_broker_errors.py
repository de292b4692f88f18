"""How client-library exceptions become trioqueue's ``BrokerError``s.

Two clients, one place: the exceptions of trioqueue's own Redis client (``classify``,
used by the Trio client and the workers; see ``_redis``) and those of redis-py
(``classify_sync``, used by ``SyncClient``). Whatever the client, the resulting
``BrokerError`` has the same class and message, with the password redacted. (The
error codes our scripts reply with are read in ``_scripts/_codes.py``.)
"""

from __future__ import annotations

import trio

from trioqueue._errors import BrokerAuthError, BrokerError, BrokerUnavailable
from trioqueue._redact import redact, redact_url
from trioqueue._redis import RedisError, ReplyError


def is_connection_error(exc: BaseException) -> bool:
    """True for failures that a reconnect may cure (network, restart, timeout)."""
    if isinstance(exc, ReplyError):
        # The server is restarting, loading, out of memory, busy with a script or
        # refusing writes for a moment: ride it out like a lost connection.
        return exc.code in TRANSIENT_CODES or "OOM command not allowed" in str(exc)
    if isinstance(exc, TimeoutError | OSError):  # ConnectionLost is a ConnectionError
        return True
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        return True
    return isinstance(exc, BaseExceptionGroup) and all(
        is_connection_error(e) for e in exc.exceptions
    )


# Replies that mean "not now": a failover under way (READONLY from a demoted primary,
# MASTERDOWN from a replica cut off from it, UNBLOCKED for a blocked read when the
# server changed role, NOREPLICAS under ``min-replicas-to-write``), a restart
# (LOADING), a cluster moving slots, a long script, a script the server does not know
# even after it was loaded (NOSCRIPT: a replica promoted between the load and the
# call; the next attempt loads it again). The command did not run.
TRANSIENT_CODES = frozenset(
    {
        "LOADING",
        "MASTERDOWN",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "OOM",
        "BUSY",
        "READONLY",
        "NOREPLICAS",
        "UNBLOCKED",
        "NOSCRIPT",
    }
)


def is_broker_failure(exc: BaseException) -> bool:
    """True for the client (and transport) errors that ``classify`` turns into a
    ``BrokerError``; anything else is a bug and keeps its own type."""
    return is_connection_error(exc) or isinstance(exc, RedisError)


def classify(exc: BaseException, url: str | None) -> BrokerError:
    """Turn a client exception into a ``BrokerError`` with a clear, redacted message."""
    denied = isinstance(exc, ReplyError) and _denied(str(exc))
    return broker_error(exc, url, denied=denied, unreachable=is_connection_error(exc))


def is_denied(exc: BaseException) -> bool:
    """True for a refusal of our credentials or permissions: retrying will not help."""
    return isinstance(exc, ReplyError) and _denied(str(exc))


def _denied(text: str) -> bool:
    return text.startswith(("NOAUTH", "WRONGPASS", "NOPERM")) or "no permissions" in text


def broker_error(
    exc: BaseException, url: str | None, *, denied: bool, unreachable: bool
) -> BrokerError:
    """The ``BrokerError`` for a client error already sorted by the client's own
    exception classes (ours or redis-py's); the message is redacted."""
    where = redact_url(url) if url else "the broker"
    detail = redact(str(exc) or type(exc).__name__, url)
    if denied or _denied(str(exc)):
        return BrokerAuthError(f"broker {where} rejected the credentials: {detail}")
    if "OOM command not allowed" in str(exc):
        return BrokerError(
            f"broker {where} is out of memory (maxmemory reached), the command was refused: "
            f"{detail}"
        )
    if unreachable:
        return BrokerUnavailable(f"cannot reach broker {where}: {detail}")
    return BrokerError(f"broker {where} error: {detail}")
