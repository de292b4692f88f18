"""The package's shape, read from its source: no import cycles, no oversized modules.

What counts as an import of one trioqueue module by another:

- every ``import`` and ``from ... import`` of a ``trioqueue`` module, relative ones
  resolved, wherever it sits, *including inside a function*. A function-local import
  only defers the cycle to the first call: the two modules still need each other, and
  the order in which they may be imported now depends on which function ran first.
- except under ``if TYPE_CHECKING:``: those never run, they only name types.
- ``from package import name`` is an import of the submodule ``package.name`` when
  there is one, else of ``package`` itself.
- importing ``a.b.c`` is an import of ``a.b.c`` only, although Python initialises ``a``
  and ``a.b`` first: a package's ``__init__`` importing its own submodules is the
  normal way to build a namespace, and a submodule that needs a name from its parent
  ``__init__`` imports it explicitly, which does count.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import trioqueue

PACKAGE_DIR = Path(trioqueue.__file__).parent
MAX_LINES = 350


@attrs.frozen
class Import:
    """Module ``source`` imports module ``target`` at run time, at ``line``."""

    source: str
    target: str
    line: int


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ["trioqueue", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in ``body``, nested ones too, except those guarded by TYPE_CHECKING."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.orelse)
            continue
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _statements([child])
            elif isinstance(child, ast.excepthandler | ast.match_case):
                yield from _statements(child.body)


def runtime_imports(name: str, source: str, modules: set[str], *, package: bool) -> list[Import]:
    """The imports of other trioqueue ``modules`` that module ``name`` runs; ``package``
    says whether ``source`` is a package's ``__init__.py``."""
    anchor_of = name if package else name.rpartition(".")[0]
    found = []
    for node in _statements(ast.parse(source).body):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = anchor_of.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        found += [
            Import(name, target, node.lineno)
            for target in dict.fromkeys(targets)
            if target in modules and target != name
        ]
    return found


def import_graph() -> dict[str, list[Import]]:
    """Each module's run-time imports of other trioqueue modules."""
    files = module_files()
    return {
        name: runtime_imports(
            name,
            path.read_text(encoding="utf-8"),
            set(files),
            package=path.name == "__init__.py",
        )
        for name, path in files.items()
    }


def cycles(graph: dict[str, list[Import]]) -> list[list[Import]]:
    """A shortest cycle through each module that is on one, each cycle listed once."""
    found: dict[frozenset[tuple[str, str]], list[Import]] = {}
    for start in sorted(graph):
        cycle = _shortest_cycle(graph, start)
        if cycle:
            found.setdefault(frozenset((i.source, i.target) for i in cycle), cycle)
    return list(found.values())


def _shortest_cycle(graph: dict[str, list[Import]], start: str) -> list[Import]:
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for edge in graph[module]:
                if edge.target == start:
                    return [*paths[module], edge]
                if edge.target not in paths:
                    paths[edge.target] = [*paths[module], edge]
                    following.append(edge.target)
        frontier = following
    return []


def describe(cycle: list[Import]) -> str:
    """``a (line 3) -> b (line 9) -> a``: each module with the line of its import."""
    steps = [f"{edge.source} (line {edge.line})" for edge in cycle]
    return " -> ".join([*steps, cycle[0].source])


def test_no_import_cycles() -> None:
    """No trioqueue module imports, at run time, a module that imports it back."""
    found = cycles(import_graph())
    if found:
        pytest.fail("import cycles:\n  " + "\n  ".join(describe(c) for c in found))


def test_no_module_is_over_350_lines() -> None:
    """Every module is small enough to hold in one's head (STYLE.md, package layout)."""
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in module_files().items()
    }
    over = sorted(((n, name) for name, n in sizes.items() if n > MAX_LINES), reverse=True)
    if over:
        pytest.fail(f"modules over {MAX_LINES} lines: " + ", ".join(f"{m} ({n})" for n, m in over))


def test_import_graph_sees_what_it_must() -> None:
    """The graph resolves relative, package and function-local imports, and skips
    TYPE_CHECKING blocks (checked on a made-up module, so the two tests above cannot
    pass by seeing nothing)."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import _b\n"
        "from .._c import x\n"
        "import trioqueue._d.sub\n"
        "if TYPE_CHECKING:\n"
        "    from trioqueue import _e\n"
        "else:\n"
        "    from trioqueue import _f\n"
        "def later():\n"
        "    from trioqueue._d import name\n"
        "try:\n"
        "    pass\n"
        "except ImportError:\n"
        "    import trioqueue._g\n"
    )
    modules = {f"trioqueue.{m}" for m in ("_c", "_d", "_d.sub", "_e", "_f", "_g", "_p._b")}
    got = runtime_imports("trioqueue._p._a", source, modules, package=False)
    assert [(i.target, i.line) for i in got] == [
        ("trioqueue._p._b", 2),
        ("trioqueue._c", 3),
        ("trioqueue._d.sub", 4),
        ("trioqueue._f", 8),
        ("trioqueue._d", 10),
        ("trioqueue._g", 14),
    ]
    graph = {
        "a": [Import("a", "b", 1)],
        "b": [Import("b", "c", 2), Import("b", "a", 5)],
        "c": [Import("c", "b", 7)],
        "d": [Import("d", "a", 1)],
    }
    assert [describe(c) for c in cycles(graph)] == [
        "a (line 1) -> b (line 5) -> a",
        "b (line 2) -> c (line 7) -> b",
    ]


def test_importing_the_package_leaves_redis_py_out() -> None:
    """redis-py (the sync client's library) is imported with the first SyncClient, not
    with the package: workers, the CLI and the Trio client start without it."""
    script = (
        "import sys, trioqueue; assert 'redis' not in sys.modules, 'imported';"
        "trioqueue.SyncClient; assert 'redis' in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
