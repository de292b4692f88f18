"""Automation: ``nox -s tests lint typecheck`` (and ``fast``, ``bench``).

``tests`` runs on every Python the package claims in its classifiers, where
installed: a missing interpreter skips that run instead of failing, so a machine
with one Python still runs the suite once. The other sessions run on the oldest
supported Python, the one mypy (``python_version``) and ruff (``target-version``)
check against.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False
nox.options.error_on_external_run = True

PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"))
OLDEST = PYTHONS[0]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (fault tests included) against a private valkey-server.

    Also fetches Debian's redis-server (TLS-capable) into .ci/redis/ when apt is
    there, for the TLS and Redis-compatibility tests; without it they skip.
    """
    session.install("-e", ".[test,examples,dashboard]")
    session.run("sh", ".ci/fetch-redis", external=True)
    session.run("pytest", *session.posargs)


@nox.session(python=OLDEST)
def fast(session: nox.Session) -> None:
    """Run the tests without the slower fault-injection and multi-server ones."""
    session.install("-e", ".[test,examples,dashboard]")
    session.run("pytest", "-m", "not fault and not cluster", *session.posargs)


@nox.session(python=OLDEST)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=OLDEST)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, and on tests/typing/: the public API as users see it."""
    session.install("-e", ".[test,dashboard]", "mypy==2.4.1")
    session.run("mypy", "trioqueue", "tests/typing")


@nox.session(python=OLDEST)
def bench(session: nox.Session) -> None:
    """Benchmark trioqueue against the Trio + hiredis floor on a private server, then
    ordered against shared queues, candidate Redis clients per command, and a local
    cluster against one server."""
    session.install("-e", ".[test,bench]")
    # One of the clients compared; where it cannot be installed, clients.py skips it.
    session.run("python", "-m", "pip", "install", "-q", "valkey-glide", success_codes=[0, 1])
    session.run("python", "benchmarks/bench.py", *session.posargs)
    session.run("python", "benchmarks/ordered.py")
    session.run("python", "benchmarks/clients.py")
    session.run("python", "benchmarks/cluster.py")
