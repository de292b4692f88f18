"""Reading a script's Lua source from ``trioqueue/_lua/`` and expanding its includes.

A script is ``_lua/<name>.lua``. Its first line is the ``#!lua`` shebang with its flags
(Redis reads them only there), then a header comment giving ``KEYS``, ``ARGV``, the
reply and the error codes. A line ``-- @include <name>`` is replaced by
``_lua/includes/<name>.lua``, expanded the same way; each include is pulled in once
per script, at its first directive, so two includes may share a third. Includes
define local functions and have no shebang.

The expanded text is what the server runs and what its SHA1 is taken of, so the
files are read once, when this package is imported.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from importlib.resources.abc import Traversable

import attrs

_INCLUDE = re.compile(r"--\s*@include\s+([a-z0-9_]+)\s*")


@attrs.frozen
class Script:
    """One expanded script: its ``name`` (the file's stem), the Lua ``source`` sent to
    the server, and that source's ``sha`` (what ``EVALSHA`` names it by)."""

    name: str
    source: str = attrs.field(repr=False)
    sha: str = attrs.field(repr=False)


def lua_root() -> Traversable:
    """The directory of the ``.lua`` files, inside the installed package."""
    return resources.files("trioqueue").joinpath("_lua")


def load(name: str) -> Script:
    """Read ``_lua/<name>.lua``, expand its includes and return the ``Script``.

    Raises ``ValueError`` when the file does not start with a ``#!lua`` line, an
    include is missing or has a shebang, or includes form a cycle.
    """
    text = lua_root().joinpath(f"{name}.lua").read_text("utf-8")
    shebang, _, rest = text.partition("\n")
    if not shebang.startswith("#!lua"):
        raise ValueError(f"_lua/{name}.lua: the first line must be a '#!lua' shebang")
    body = _expand(rest, f"{name}.lua", included=set(), stack=())
    source = f"{shebang}\n{body}"
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def _expand(text: str, where: str, *, included: set[str], stack: tuple[str, ...]) -> str:
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        match = _INCLUDE.fullmatch(line.rstrip("\n"))
        if match is None:
            out.append(line)
            continue
        name = match.group(1)
        if name in stack:
            raise ValueError(f"{where}: include cycle {' -> '.join((*stack, name))}")
        if name in included:
            continue
        included.add(name)
        path = lua_root().joinpath("includes", f"{name}.lua")
        if not path.is_file():
            raise ValueError(f"{where}: no include named {name!r} (looked for {path})")
        inner = path.read_text("utf-8")
        if inner.startswith("#!"):
            raise ValueError(f"includes/{name}.lua: an include must not have a shebang")
        expanded = _expand(inner, f"includes/{name}.lua", included=included, stack=(*stack, name))
        out.append(expanded if expanded.endswith("\n") else expanded + "\n")
    return "".join(out)
