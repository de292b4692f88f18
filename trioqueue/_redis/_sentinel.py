"""Sentinel: finding the primary of a service for ``redis+sentinel://`` URLs.

``redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[?db=N]`` (and
``rediss+sentinel://`` for TLS, to the sentinels and the data nodes alike) names the
sentinels to ask and the service whose primary to use. The user name and password
are the *data node's*; the sentinels' own come from the ``sentinel_username`` and
``sentinel_password`` query options (a sentinel without ``requirepass`` needs none).

``Redis`` asks ``SentinelResolver.primary`` for an address whenever it opens a
connection, so a failover is followed as soon as a connection is replaced: a
connection that finds its server no longer a primary (``ROLE`` on a new connection,
or a ``READONLY`` reply on an open one) is dropped by ``Redis``, and the next call
asks the sentinels again. Sentinels are asked in turn; the first that names a primary
moves to the front of the list, as the Sentinel client guidelines advise.

``SentinelResolver.follow`` also listens on a sentinel for ``+switch-master`` of the
service and retires every connection at once when it comes: after ``SENTINEL
FAILOVER`` the old primary stays a writable primary until Sentinel's next check
(about 10 s later) demotes it, and writes it takes meanwhile are lost; waiting for a
``READONLY`` would keep writing there all that time.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import trio

from trioqueue._redis._address import Address
from trioqueue._redis._connection import Connection
from trioqueue._redis._errors import ConnectionLost, RedisError, ReplyError, TLSError
from trioqueue._redis._pubsub import PubSub
from trioqueue._redis._transport import Transport, open_transport

__all__ = [
    "SCHEMES",
    "PrimaryNotFound",
    "SentinelResolver",
    "SentinelTarget",
    "StalePrimary",
    "check_role",
    "is_sentinel_url",
    "parse_sentinel_url",
]

log = logging.getLogger("trioqueue.redis.sentinel")

SCHEMES = ("redis+sentinel", "rediss+sentinel")
# A quiet +switch-master subscription is checked with a PING after this long.
QUIET_CHECK = 5.0
DEFAULT_PORT = 26379
_DENIED = ("NOAUTH", "WRONGPASS", "NOPERM")


class PrimaryNotFound(ConnectionLost):
    """No sentinel named a primary for the service (none reachable, or all said none).

    A ``ConnectionLost``: nothing was sent to a data node, and a later try may find
    the primary a failover elected."""


class StalePrimary(ConnectionLost):
    """The server Sentinel named is not (or no longer) a primary; the connection was
    closed before any command was sent on it."""


@attrs.frozen
class SentinelTarget:
    """A parsed Sentinel URL: whom to ask, for what, and how to talk to the primary."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    node: Address  # the data node's credentials, database and TLS (no host yet)
    sentinel: Address  # the sentinels' own credentials and TLS


def is_sentinel_url(url: str) -> bool:
    """True for ``redis+sentinel://`` and ``rediss+sentinel://`` URLs."""
    return url.split("://", 1)[0] in SCHEMES if "://" in url else False


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse a Sentinel URL (see the module docstring); ``ValueError`` if malformed."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"unsupported scheme {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    password = query.get("password", password)
    sentinels = tuple(_host_port(h) for h in hosts.split(",") if h)
    if not sentinels:
        raise ValueError("no sentinel host")
    service = unquote(parts.path.strip("/"))
    if not service or "/" in service:
        raise ValueError("expected the service name as the path, e.g. /mymaster")
    db_text = query.get("db", "")
    if db_text and not db_text.isdigit():
        raise ValueError(f"database must be a number, got {db_text!r}")
    tls = parts.scheme == "rediss+sentinel"
    node = Address(username=username, password=password, db=int(db_text or 0), tls=tls)
    sentinel = Address(
        username=query.get("sentinel_username") or None,
        password=query.get("sentinel_password"),
        tls=tls,
    )
    return SentinelTarget(sentinels=sentinels, service=service, node=node, sentinel=sentinel)


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [::1]:26379
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"no host name in {text!r}")
    if port_text and not port_text.isdigit():
        raise ValueError(f"port must be a number, got {port_text!r}")
    port = int(port_text) if port_text else DEFAULT_PORT
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return host, port


class SentinelResolver:
    """Asks the sentinels of ``target`` for the current primary's address."""

    def __init__(
        self, target: SentinelTarget, *, connect_timeout: float, tls_ca_file: str | None
    ) -> None:
        self.target = target
        self._sentinels = list(target.sentinels)
        self._timeout = connect_timeout
        self._tls = target.sentinel.tls_context(tls_ca_file)

    async def primary(self) -> Address:
        """The primary's address, with the data node's credentials; raise
        ``PrimaryNotFound`` if no sentinel names one (``ReplyError`` if every
        sentinel refused our credentials: retrying will not help)."""
        problems: list[str] = []
        denied: list[ReplyError] = []
        for host, port in list(self._sentinels):
            try:
                with trio.fail_after(self._timeout):
                    reply = await self._ask(host, port)
            except trio.TooSlowError:
                problems.append(f"{host}:{port}: no answer within {self._timeout}s")
                continue
            except ReplyError as exc:
                if exc.code in _DENIED:
                    denied.append(exc)
                problems.append(f"{host}:{port}: {exc}")
                continue
            except TLSError:
                raise
            except (RedisError, OSError) as exc:
                problems.append(f"{host}:{port}: {exc}")
                continue
            if not reply:
                problems.append(f"{host}:{port}: no primary known for {self.target.service!r}")
                continue
            # Ask this one first next time.
            self._sentinels.remove((host, port))
            self._sentinels.insert(0, (host, port))
            return attrs.evolve(self.target.node, host=reply[0].decode(), port=int(reply[1]))
        if denied and len(denied) == len(self._sentinels):
            # Every sentinel refused us: a wrong sentinel_password, not an outage.
            raise ReplyError(f"{denied[0]} (sentinel credentials: sentinel_username/_password)")
        raise PrimaryNotFound(
            f"no primary found for service {self.target.service!r}: " + "; ".join(problems)
        )

    async def follow(self, switched: Callable[[], None]) -> None:
        """Until cancelled: call ``switched`` whenever a sentinel announces a new
        primary for the service (``+switch-master``), and once after a subscription
        that had been lost is back (a switch may have been missed meanwhile)."""
        lost = False
        while True:
            for host, port in list(self._sentinels):
                try:
                    await self._listen(host, port, switched, resubscribed=lost)
                except (RedisError, OSError, trio.TooSlowError) as exc:
                    log.debug("sentinel %s:%d subscription lost: %s", host, port, exc)
                    lost = True
            # Every sentinel failed: the connections' own checks still catch a
            # demoted primary (ROLE, READONLY) meanwhile.
            await trio.sleep(random.uniform(0.5, 1.0))

    async def _listen(
        self, host: str, port: int, switched: Callable[[], None], *, resubscribed: bool
    ) -> None:
        with trio.fail_after(self._timeout):
            transport = await _open(host, port, self._tls)
        try:
            pubsub = PubSub(transport, timeout=QUIET_CHECK)
            with trio.fail_after(self._timeout):
                await pubsub.start(self.target.sentinel.handshake(None), ["+switch-master"])
            if resubscribed:
                switched()
            async for message in pubsub:
                # "<service> <old ip> <old port> <new ip> <new port>"
                if message.split(b" ", 1)[0].decode(errors="replace") == self.target.service:
                    log.info("sentinel: %s", message.decode(errors="replace"))
                    switched()
        finally:
            transport.close()

    async def _ask(self, host: str, port: int) -> Sequence[bytes] | None:
        transport = await _open(host, port, self._tls)
        conn = Connection(transport, timeout=None)  # under our caller's fail_after
        try:
            commands = self.target.sentinel.handshake(None)
            commands.append(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.target.service])
            replies = await conn.pipeline(commands)
        finally:
            conn.close()
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        last: Sequence[bytes] | None = replies[-1]
        return last


async def _open(host: str, port: int, tls: ssl.SSLContext | None) -> Transport:
    try:
        return await open_transport(host=host, port=port, path=None, tls=tls)
    except OSError as exc:
        raise ConnectionLost(f"cannot connect to sentinel {host}:{port}: {exc}") from exc


def check_role(address: Address, reply: object) -> None:
    """Raise ``StalePrimary`` unless ``reply`` (to ``ROLE``) says ``master``."""
    role = reply[0] if isinstance(reply, list) and reply else reply
    if role != b"master":
        shown = role.decode() if isinstance(role, bytes) else repr(role)
        raise StalePrimary(f"{address.where} is not a primary (role {shown}); asking Sentinel")
