"""Fixtures of the fault tests: worker processes that are always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server
from tests.fault.harness import FIGURES, Workers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Workers]]:
    """Make a ``Workers`` set; every process it started is killed at teardown."""
    made: list[Workers] = []

    def make(server: Server, prefix: str, **options: Any) -> Workers:
        w = Workers(tmp_path / f"run{len(made)}", server.url, prefix, **options)
        made.append(w)
        return w

    yield make
    for w in made:
        w.cleanup()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault run figures")
        for name, text in FIGURES:
            terminalreporter.write_line(f"{name}:")
            for line in text.splitlines():
                terminalreporter.write_line(f"    {line}")
