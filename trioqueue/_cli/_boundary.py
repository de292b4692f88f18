"""The one place where an error becomes an exit status.

Commands do not print errors or pick exit codes: they raise. ``ErrorBoundary`` is the
class of the root command group, so every command runs inside its ``invoke``, which
decides what an escaping exception means:

- a ``TrioqueueError`` (a broker that cannot be reached, a full queue, a failed job...)
  or a ``CommandError`` (a problem the command found itself: a body that is not JSON, a
  config without a handler for a queue) prints ``error: <message>`` on standard error
  and exits 1, without a traceback;
- ``KeyboardInterrupt`` prints ``error: interrupted`` and exits 130;
- the same, wrapped alone in an exception group (as a nursery delivers it);
- anything else is a bug in trioqueue or in the app, and keeps its traceback.

A password of the broker URL never reaches the terminal: a command hands its URL to
``hide_password`` once it has read the config, and every message is redacted with it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from trioqueue._cli._console import err
from trioqueue._connection import sole_exception
from trioqueue._errors import TrioqueueError
from trioqueue._redact import redact

# The URLs whose passwords the running command must not print. A fresh list per
# invocation, so one command's URL does not leak into the next (tests invoke several).
_broker_urls: ContextVar[list[str]] = ContextVar("trioqueue_cli_broker_urls")


class CommandError(Exception):
    """A command cannot go on; ``message`` says why and, when possible, what to do.

    Raised by commands, turned into ``error: <message>`` and exit status 1 by
    ``ErrorBoundary``.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def hide_password(url: str | None) -> None:
    """Redact ``url``'s password from every error message of the running command."""
    urls = _broker_urls.get(None)
    if url and urls is not None:
        urls.append(url)


def exit_status(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit status ``exc`` ends a command with, or None for a bug."""
    if isinstance(exc, BaseExceptionGroup):
        # Errors from inside a nursery arrive wrapped; show ours as one line too.
        inner = sole_exception(exc)
        return None if inner is None else exit_status(inner)
    if isinstance(exc, CommandError):
        return exc.message, 1
    if isinstance(exc, TrioqueueError):
        return str(exc), 1
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    return None


class ErrorBoundary(TyperGroup):
    """The root command group: runs the chosen command and maps what escapes it."""

    # ``ctx`` is the click context, which typer does not export under a stable name.
    def invoke(self, ctx: Any) -> Any:
        """Run the command; turn an error it raises into a message and an exit status."""
        urls: list[str] = []
        token = _broker_urls.set(urls)
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            verdict = exit_status(exc)
            if verdict is None:
                raise
            message, code = verdict
            for url in urls:
                message = redact(message, url)
            # Escaped: a message may hold brackets (``trioqueue[dashboard]``, a key path
            # like ``queues[0]``) that rich would otherwise take for markup and drop.
            err.print(
                f"[bold red]error:[/] {escape(message)}",
                highlight=False,
                markup=True,
                soft_wrap=True,
            )
            # The message is the whole story: the exception behind it is not news
            # to an operator, and a traceback could show values we just redacted.
            raise typer.Exit(code) from None
        finally:
            _broker_urls.reset(token)
