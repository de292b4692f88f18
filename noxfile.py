"""Automation: ``nox -s tests lint typecheck`` (and ``bench``)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (fault tests included) against a private valkey-server.

    Also fetches Debian's redis-server (TLS-capable) into .ci/redis/ when apt is
    there, for the TLS and Redis-compatibility tests; without it they skip.
    """
    session.install("-e", ".[test,examples]")
    session.run("sh", ".ci/fetch-redis", external=True)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def fast(session: nox.Session) -> None:
    """Run the tests without the slower fault-injection ones."""
    session.install("-e", ".[test,examples]")
    session.run("pytest", "-m", "not fault", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, and on tests/typing/: the public API as users see it."""
    session.install("-e", ".[test]", "mypy==2.4.1")
    session.run("mypy", "trioqueue", "tests/typing")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmark trioqueue against a raw Redis loop on a private server."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
    session.run("python", "benchmarks/ordered.py")
