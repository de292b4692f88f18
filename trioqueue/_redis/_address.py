"""Where and how to connect: a broker URL parsed once, and the handshake after
connecting (``AUTH``, ``SELECT``, ``CLIENT SETNAME``)."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from trioqueue._redis._connection import Arg

__all__ = ["Address", "parse_url"]


@attrs.frozen
class Address:
    """A server and the credentials and database to use on it."""

    host: str | None = None
    port: int = 6379
    path: str | None = None  # a unix socket
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False

    def handshake(self, client_name: str | None) -> list[list[Arg]]:
        """The commands that set a fresh connection up, in order."""
        commands: list[list[Arg]] = []
        if self.password is not None:
            if self.username:
                commands.append(["AUTH", self.username, self.password])
            else:
                commands.append(["AUTH", self.password])
        if self.db:
            commands.append(["SELECT", self.db])
        if client_name:
            commands.append(["CLIENT", "SETNAME", client_name])
        return commands

    def tls_context(self, ca_file: str | None) -> ssl.SSLContext | None:
        """The TLS context (certificate and host name checked), or None for plain."""
        return ssl.create_default_context(cafile=ca_file) if self.tls else None

    @property
    def where(self) -> str:
        """``host:port`` or the socket path, for messages."""
        return self.path if self.path is not None else f"{self.host}:{self.port}"


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    """True for ``redis+cluster://`` and ``rediss+cluster://`` URLs."""
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> list[Address]:
    """``redis+cluster://[[user]:password@]host:port[,host:port...][/][?...]`` (or
    ``rediss+cluster://`` for TLS): one ``Address`` per seed node."""
    scheme, _, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"unsupported scheme {scheme!r}")
    netloc, _, tail = rest.partition("/")
    path = tail.split("?", 1)[0].strip("/")
    if path and path != "0":
        raise ValueError("a cluster has only database 0")
    userinfo, _, hosts = netloc.rpartition("@")
    seeds = []
    for host_port in hosts.split(","):
        plain = "rediss" if scheme.startswith("rediss") else "redis"
        one = parse_url(f"{plain}://{userinfo + '@' if userinfo else ''}{host_port}/0")
        seeds.append(one)
    if not seeds:
        raise ValueError("no seed node")
    return seeds


def parse_url(url: str) -> Address:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
    ``unix://[[user]:password@]/path[?db=N]``; raise ``ValueError`` if malformed."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    password = query.get("password", password)
    db_text = query.get("db", "")
    if parts.scheme in ("redis", "rediss"):
        db_text = db_text or parts.path.strip("/")
        host, port = parts.hostname, parts.port  # .port raises ValueError if bad
        if not host:
            raise ValueError("no host name")
        address = Address(host=host, port=port or 6379, tls=parts.scheme == "rediss")
    elif parts.scheme == "unix":
        if not parts.path:
            raise ValueError("no socket path")
        address = Address(path=unquote(parts.path))
    else:
        raise ValueError(f"unsupported scheme {parts.scheme!r}")
    if db_text and not db_text.isdigit():
        raise ValueError(f"database must be a number, got {db_text!r}")
    return attrs.evolve(address, username=username, password=password, db=int(db_text or 0))
