"""The errors of trioqueue's Redis client.

Two kinds, because callers act on them differently: an error *reply* (the server
answered, the command did not run or failed inside, the connection is fine) and a
*lost connection* (no answer: whether the command ran is unknown, the connection is
closed and the next call opens a new one).
"""

from __future__ import annotations

__all__ = ["ConnectionLost", "RedisError", "ReplyError", "ReplyTimeout", "TLSError"]


class RedisError(Exception):
    """Anything the Redis client raises about the server or the connection."""


class ReplyError(RedisError):
    """An error reply from the server, with its code (``ERR``, ``NOSCRIPT``, ...) as
    the first word of the message, exactly as the server sent it."""

    @property
    def code(self) -> str:
        """The error code: the first word of the reply."""
        text = str(self)
        return text.split(" ", 1)[0] if text else ""


class ConnectionLost(RedisError, ConnectionError):
    """The connection failed or was closed: replies still owed will not arrive."""


class ReplyTimeout(ConnectionLost, TimeoutError):
    """No reply within the socket timeout; the connection was closed."""


class TLSError(RedisError):
    """The TLS handshake failed for a reason a retry will not cure (the certificate
    does not verify, or is for another host name)."""
