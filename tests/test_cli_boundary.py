"""The CLI's error boundary, in process: what an exception escaping a command becomes."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from trioqueue import BrokerUnavailable
from trioqueue._cli._boundary import CommandError, ErrorBoundary, hide_password

URL = "redis://user:hunter2@127.0.0.1:1/0"


def invoke(exc: BaseException, *, url: str | None = URL) -> tuple[int, str, BaseException | None]:
    """Run the ``fail`` command of a two-command app (a group, like the real one): it
    registers ``url`` as the broker's, then raises ``exc``."""
    app = typer.Typer(cls=ErrorBoundary, pretty_exceptions_enable=False)

    @app.command()
    def fail() -> None:
        hide_password(url)
        raise exc

    @app.command()
    def ok() -> None:
        pass

    got = CliRunner().invoke(app, ["fail"])
    return got.exit_code, got.output, got.exception


@pytest.mark.parametrize(
    "exc",
    [
        BrokerUnavailable("cannot reach broker"),
        CommandError("cannot reach broker"),
        BaseExceptionGroup(
            "outer", [ExceptionGroup("inner", [CommandError("cannot reach broker")])]
        ),
    ],
)
def test_boundary_prints_our_errors_as_one_line_and_exits_1(exc: BaseException) -> None:
    """A trioqueue or command error, bare or alone in nested groups: one line, exit 1."""
    assert invoke(exc)[:2] == (1, "error: cannot reach broker\n")


def test_boundary_turns_ctrl_c_into_exit_130() -> None:
    """Ctrl-C is not a crash: one line, exit 130."""
    assert invoke(KeyboardInterrupt())[:2] == (130, "error: interrupted\n")


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("a bug"),
        ExceptionGroup("two", [CommandError("a"), CommandError("b")]),
        ExceptionGroup("one", [RuntimeError("a bug")]),
    ],
)
def test_boundary_lets_bugs_through_unchanged(exc: BaseException) -> None:
    """Anything else escapes as it is, so its traceback is printed; no error line."""
    code, output, raised = invoke(exc)
    assert code == 1
    assert raised is exc
    assert "error:" not in output


def test_boundary_hides_the_broker_password() -> None:
    """The broker's password is redacted wherever the message shows it."""
    code, output, _ = invoke(CommandError(f"cannot log in to {URL} with hunter2"))
    assert code == 1
    assert output == "error: cannot log in to redis://user:***@127.0.0.1:1/0 with ***\n"


def test_boundary_forgets_the_password_after_each_command() -> None:
    """One invocation's URL is not redacted from the next one's messages."""
    invoke(CommandError("first"))
    assert invoke(CommandError("hunter2 here"), url=None)[1] == "error: hunter2 here\n"
