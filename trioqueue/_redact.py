"""Keeping broker passwords out of messages, logs and tracebacks."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

# Query options that carry a secret (``sentinel_password``: a Sentinel URL's own).
SECRET_OPTIONS = ("password", "sentinel_password")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    try:
        parts = urlsplit(url)
        if "," in parts.netloc:  # several hosts (Sentinel): no single port to check
            return _redact_hosts(parts.scheme, parts.netloc, parts.path, parts.query)
        port = parts.port  # parsed lazily: "host:notaport" fails only here
    except ValueError:
        return "<unparseable url>"
    secret_query = any(k in SECRET_OPTIONS for k, _ in parse_qsl(parts.query))
    if secret_query:
        parts = parts._replace(query=_redact_query(parts.query))
    if parts.password is None:
        return _join(parts.scheme, parts.netloc, parts.path, parts.query) if secret_query else url
    user = parts.username or ""
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _redact_hosts(scheme: str, netloc: str, path: str, query: str) -> str:
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    return _join(scheme, netloc, path, _redact_query(query))


def _join(scheme: str, netloc: str, path: str, query: str) -> str:
    # Not urlunsplit: it writes "unix:/path" for "unix:///path".
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def _redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    shown = [(k, "***" if k in SECRET_OPTIONS else v) for k, v in pairs]
    return urlencode(shown, safe="*")


def redact(text: str, url: str | None) -> str:
    """``text`` with the passwords of ``url`` removed wherever they appear."""
    for password in _passwords(url):
        text = text.replace(password, "***")
    return text


def chainable(exc: BaseException, url: str | None) -> BaseException | None:
    """``exc``, to chain as the cause of the ``BrokerError`` that replaces it, or None
    if its text (or that of an error it chains) shows the password of ``url``.

    The original error tells an operator what failed underneath (a TLS handshake, a
    refused connection), but it is printed unredacted with the traceback; and a
    server can echo the AUTH arguments in an error reply (``unknown command 'AUTH',
    with args beginning with: ...`` when AUTH is renamed away).
    """
    passwords = _passwords(url)
    if not passwords:
        return exc
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if any(password in str(link) for password in passwords):
            return None
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return exc


def _passwords(url: str | None) -> list[str]:
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    userinfo, at, _ = parts.netloc.rpartition("@")
    found = [unquote(userinfo.split(":", 1)[1])] if at and ":" in userinfo else []
    found += [v for k, v in parse_qsl(parts.query) if k in SECRET_OPTIONS]
    # Longest first, so that one password containing another is removed whole.
    return sorted({p for p in found if p}, key=len, reverse=True)
