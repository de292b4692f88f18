"""Keeping broker passwords out of messages, logs and tracebacks."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed lazily: "host:notaport" fails only here
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redact(text: str, url: str | None) -> str:
    """``text`` with the password of ``url`` removed wherever it appears."""
    password = _password(url)
    return text.replace(password, "***") if password else text


def chainable(exc: BaseException, url: str | None) -> BaseException | None:
    """``exc``, to chain as the cause of the ``BrokerError`` that replaces it, or None
    if its text (or that of an error it chains) shows the password of ``url``.

    The original error tells an operator what failed underneath (a TLS handshake, a
    refused connection), but it is printed unredacted with the traceback; and a
    server can echo the AUTH arguments in an error reply (``unknown command 'AUTH',
    with args beginning with: ...`` when AUTH is renamed away).
    """
    password = _password(url)
    if not password:
        return exc
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if password in str(link):
            return None
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return exc


def _password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None
