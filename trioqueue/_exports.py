"""Making the names ``trioqueue/__init__.py`` re-exports say they come from ``trioqueue``.

Each public class and function is defined in a private module (``trioqueue._errors``,
``trioqueue._client``...), and without help that is what tracebacks, reprs, ``help()``
and the API docs show: ``trioqueue._errors.QueueFull``. ``fixup_module_metadata`` is
trio's answer (``trio/_util.py``): set ``__module__`` to the public module, and
``__name__``/``__qualname__`` to the public name, for every public object and, in a
class, for every method, property and nested class defined in its body.

Two consequences are handled here rather than left to surprise users:

- Pickle looks a class up as ``module.qualname``: ``trioqueue.QueueFull`` exists, so
  pickling still works (``tests/test_public_api.py`` checks each public name).
- String annotations (``from __future__ import annotations``) of a class are evaluated
  in ``sys.modules[cls.__module__]`` by ``typing.get_type_hints``, which attrs and
  cattrs call to learn field types (the config is structured that way). Moved to
  ``trioqueue``, ``"dt.datetime | None"`` would no longer resolve, so each class's own
  annotations are evaluated first, in the module that defined them.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping


def fixup_module_metadata(module_name: str, namespace: Mapping[str, object]) -> None:
    """Give the public objects of ``namespace`` the ``module_name`` they are exported from.

    Only objects defined in a submodule of ``module_name`` are touched (a re-exported
    name from another library keeps its own metadata); names starting with ``_`` are
    private and left alone.
    """
    seen: set[int] = set()
    submodules = f"{module_name}."

    def fix(qualname: str, name: str, obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or not module.startswith(submodules):
            return
        if isinstance(obj, type):
            _resolve_annotations(obj)
        old_qualname = getattr(obj, "__qualname__", None)
        obj.__module__ = module_name
        # A module's __name__ is dotted, and a module is not renamed.
        if "." not in getattr(obj, "__name__", "."):
            obj.__name__ = name  # type: ignore[attr-defined]
            if old_qualname is not None:
                obj.__qualname__ = qualname  # type: ignore[attr-defined]
        if isinstance(obj, type):
            for attr, value in vars(obj).items():
                for member in _functions_of(value):
                    # Only what the class body defined: an object merely assigned to a
                    # class attribute has a name and a home of its own.
                    if getattr(member, "__qualname__", None) == f"{old_qualname}.{attr}":
                        fix(f"{qualname}.{attr}", attr, member)

    for name, obj in namespace.items():
        if not name.startswith("_"):
            fix(name, name, obj)


def _functions_of(value: object) -> list[object]:
    """The objects behind a class attribute that carry a name: the function under a
    classmethod or staticmethod, a property's accessors, or the value itself."""
    if isinstance(value, classmethod | staticmethod):
        return [value.__func__]
    if isinstance(value, property):
        accessors: list[Callable[..., object] | None] = [value.fget, value.fset, value.fdel]
        return [f for f in accessors if f is not None]
    return [value]


def _resolve_annotations(cls: type) -> None:
    """Replace ``cls``'s own string annotations by the objects they name, evaluated
    where ``cls`` was defined; leave them as they are if one does not resolve."""
    own = inspect.get_annotations(cls)
    if not own:
        return
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:
        # A name only imported under TYPE_CHECKING: it did not resolve before either.
        return
    cls.__annotations__ = {name: hints.get(name, value) for name, value in own.items()}
