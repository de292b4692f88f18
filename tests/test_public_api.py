"""The public namespace: ``import trioqueue`` is the whole API, and it says so."""

from __future__ import annotations

import ast
import inspect
import pickle
import typing
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType

import attrs
import pytest

import trioqueue
from trioqueue._exports import fixup_module_metadata
from trioqueue._keys import PartitionKeys

PUBLIC = sorted(trioqueue.__all__)
# Public names that are neither classes nor functions, so carry no __module__ of their own.
NOT_DEFINITIONS = {
    "EventKind": "a Literal type alias",
    "JobState": "a Literal type alias",
    "__version__": "a string",
}
# Public subpackages, each tested on its own (tests/test_dashboard_*.py).
SUBPACKAGES = {"dashboard"}
DEFINITIONS = [name for name in PUBLIC if name not in NOT_DEFINITIONS]


def exported_by_init() -> set[str]:
    """The names ``trioqueue/__init__.py`` binds without a leading underscore, those it
    imports on first use (named for type checkers under ``if _TYPE_CHECKING:``)
    included."""
    tree = ast.parse(Path(trioqueue.__file__).read_text(encoding="utf-8"))
    names = set()
    body = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "_TYPE_CHECKING":
            body += node.body
    for node in body:
        if isinstance(node, ast.ImportFrom):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return {name for name in names if not name.startswith("_")} | {"__version__"}


def test_all_lists_exactly_what_init_exports() -> None:
    """Every name the package imports or defines is in ``__all__``, and nothing else."""
    assert set(PUBLIC) == exported_by_init()
    assert len(PUBLIC) == len(trioqueue.__all__), "__all__ lists a name twice"


def test_all_names_exist_and_nothing_public_is_missing() -> None:
    """``__all__`` names real attributes, and no public attribute is left out of it."""
    for name in PUBLIC:
        assert hasattr(trioqueue, name), name
    public = {name for name in vars(trioqueue) if not name.startswith("_")}
    # Public subpackages with an extra of their own: an attribute once imported, never
    # imported by ``import trioqueue`` itself (it would need the extra).
    public -= SUBPACKAGES
    assert public <= set(PUBLIC), public - set(PUBLIC)


@pytest.mark.parametrize("name", DEFINITIONS)
def test_public_name_says_it_lives_in_trioqueue(name: str) -> None:
    """``trioqueue.X.__module__`` is ``trioqueue`` and its qualname is ``X``, so
    tracebacks print ``trioqueue.QueueFull``; the object has a docstring."""
    obj = getattr(trioqueue, name)
    assert obj.__module__ == "trioqueue"
    assert obj.__qualname__ == obj.__name__ == name
    assert inspect.getdoc(obj), f"trioqueue.{name} has no docstring"


def members(cls: type) -> Iterator[tuple[str, object]]:
    """(attribute, function) for each function defined in ``cls``'s body, accessors
    of properties and functions under classmethod/staticmethod included."""
    for attr, value in vars(cls).items():
        if isinstance(value, classmethod | staticmethod):
            value = value.__func__
        if isinstance(value, property):
            value = value.fget
        if isinstance(value, FunctionType) and value.__qualname__.endswith(f".{attr}"):
            yield attr, value


@pytest.mark.parametrize(
    "name", [n for n in DEFINITIONS if isinstance(getattr(trioqueue, n), type)]
)
def test_public_class_members_say_they_live_in_trioqueue(name: str) -> None:
    """Methods and properties of a public class are ``trioqueue.X.method`` too."""
    cls = getattr(trioqueue, name)
    for attr, function in members(cls):
        assert (function.__module__, function.__qualname__) == ("trioqueue", f"{name}.{attr}")


@pytest.mark.parametrize("name", DEFINITIONS)
def test_public_name_pickles_by_reference(name: str) -> None:
    """Pickle finds each class and function again under its new ``__module__``."""
    obj = getattr(trioqueue, name)
    assert pickle.loads(pickle.dumps(obj)) is obj


def test_public_values_pickle() -> None:
    """Instances round-trip too (a process handler's errors travel back by pickle)."""
    status = trioqueue.JobStatus("j", "q", "queued")
    context = trioqueue.JobContext("j", "q", 0, 1, 1, "0-1", "w")
    for value in (status, context, trioqueue.Backoff()):
        assert pickle.loads(pickle.dumps(value)) == value
    reject = pickle.loads(pickle.dumps(trioqueue.Reject("bad input")))
    assert (type(reject), reject.reason) == (trioqueue.Reject, "bad input")


@pytest.mark.parametrize(
    "name", [n for n in DEFINITIONS if attrs.has(getattr(trioqueue, n))], ids=str
)
def test_public_attrs_class_field_types_still_resolve(name: str) -> None:
    """attrs and cattrs read field types with ``typing.get_type_hints``, which evaluates
    string annotations in ``sys.modules[cls.__module__]``: they must survive the move."""
    cls = getattr(trioqueue, name)
    hints = typing.get_type_hints(cls)
    assert set(hints) >= {field.name for field in attrs.fields(cls)}
    attrs.resolve_types(cls)


def test_fixup_leaves_foreign_and_private_names_alone() -> None:
    """Only objects from the package's own submodules are rewritten."""

    def local() -> None:
        """Defined in tests, not in trioqueue."""

    before = (local.__module__, local.__qualname__)
    fixup_module_metadata("trioqueue", {"local": local, "_keys": PartitionKeys, "Path": Path})
    assert (local.__module__, local.__qualname__) == before
    assert PartitionKeys.__module__ == "trioqueue._keys"
    assert Path.__module__ == "pathlib"


@pytest.mark.parametrize(
    "exc",
    [
        trioqueue.ConfigError(["queues.q.retries: expected int"]),
        trioqueue.QueueFull("q", 10),
        trioqueue.MessageTooLarge("q", 2048, 1024),
        trioqueue.JobFailed("j1", "ValueError", "bad"),
        trioqueue.JobCancelled("j1"),
        trioqueue.Retry(delay=5.0, reason="later"),
        trioqueue.Retry(delay=2.5),
        trioqueue.BatchFailed([0, 2], reason="two failed"),
        trioqueue.Reject("malformed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_exceptions_survive_pickling_with_their_fields(exc: BaseException) -> None:
    """A handler in a child process raises these; the worker gets them back whole."""
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert vars(back) == vars(exc)


def test_dashboard_subpackage_exports_documented_names() -> None:
    """``trioqueue.dashboard`` has an ``__all__`` of documented names, and
    ``import trioqueue`` does not import it (it needs the ``dashboard`` extra)."""
    import subprocess
    import sys

    import trioqueue.dashboard as dashboard

    for name in dashboard.__all__:
        obj = getattr(dashboard, name)
        assert isinstance(obj, str) or obj.__doc__, name
    probe = "import sys, trioqueue; print('trioqueue.dashboard' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
