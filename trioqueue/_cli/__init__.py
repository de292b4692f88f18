"""The ``trioqueue`` command line: run workers, send jobs, inspect and repair queues.

This module is the command tree; each command lives in the module named for it and
raises instead of choosing an exit status, which ``_boundary.ErrorBoundary``, the root
group, does for all of them (see docs/reference/cli.md, "Exit status").

``pretty_exceptions_enable=False`` keeps typer from printing a bug's traceback with the
local variables of every frame: they may hold the broker URL and its password.
"""

from __future__ import annotations

import typer

from trioqueue._cli._boundary import ErrorBoundary
from trioqueue._cli._check import check
from trioqueue._cli._dashboard import dashboard
from trioqueue._cli._dlq import dlq_list, dlq_purge, dlq_retry
from trioqueue._cli._jobs import cancel, result
from trioqueue._cli._partitions import partitions
from trioqueue._cli._pause import pause, resume
from trioqueue._cli._run import run
from trioqueue._cli._send import send
from trioqueue._cli._status import status

__all__ = ["cli", "main"]

cli = typer.Typer(
    name="trioqueue",
    help="Typed background jobs on Trio, brokered by Redis Streams.",
    cls=ErrorBoundary,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (run, send, check, status, cancel, result, partitions, pause, resume, dashboard):
    cli.command()(command)

dlq = typer.Typer(help="Inspect, re-send and purge dead-lettered jobs.", no_args_is_help=True)
dlq.command("list")(dlq_list)
dlq.command("retry")(dlq_retry)
dlq.command("purge")(dlq_purge)
cli.add_typer(dlq, name="dlq")


def main() -> None:
    """Entry point of the ``trioqueue`` script."""
    cli()
