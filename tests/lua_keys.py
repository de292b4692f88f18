"""A static check that a Lua script touches only keys it was given in ``KEYS``.

Redis Cluster refuses a key a script did not declare once that key's slot has begun
to migrate, and by then the script's earlier writes are applied. So every key argument
of a ``redis.call`` / ``redis.pcall`` (or ``pcall(redis.call, ...)``) must be
``KEYS[...]``, a local bound only to such values, or a parameter of a local function
that every call site passes such a value. Anything else (a concatenation,
``string.sub``, ``string.format``, ``ARGV[...]``, a value read from Redis) is reported.

This is a small tokenizer and scope tracker, not a Lua parser: it understands the
subset the scripts use and errs towards reporting. A command missing from
``KEY_POSITIONS`` is reported too, so a new command cannot slip through unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import attrs


# Which arguments (after the command name) are keys.
def _first(args: Sequence[list[str]]) -> range:
    return range(min(1, len(args)))


def _all(args: Sequence[list[str]]) -> range:
    return range(len(args))


def _none(args: Sequence[list[str]]) -> range:
    return range(0)


def _second(args: Sequence[list[str]]) -> range:
    """XGROUP: the key follows the subcommand."""
    return range(1, min(2, len(args)))


def _streams(args: Sequence[list[str]]) -> range:
    """XREAD / XREADGROUP: the first half of what follows STREAMS."""
    for i, arg in enumerate(args):
        if len(arg) == 1 and arg[0].strip("'\"").upper() == "STREAMS":
            rest = len(args) - i - 1
            return range(i + 1, i + 1 + rest // 2)
    return range(len(args))  # no literal STREAMS: check everything


KEY_POSITIONS: dict[str, Callable[[Sequence[list[str]]], range]] = {
    **dict.fromkeys(
        [
            "GET",
            "SET",
            "INCR",
            "PEXPIRE",
            "EXPIRE",
            "RPUSH",
            "LPUSH",
            "HGET",
            "HSET",
            "HMGET",
            "HINCRBY",
            "ZADD",
            "ZREM",
            "ZCARD",
            "ZRANGE",
            "ZRANGEBYSCORE",
            "ZREMRANGEBYSCORE",
            "XADD",
            "XACK",
            "XDEL",
            "XLEN",
            "XRANGE",
            "XREVRANGE",
            "XPENDING",
            "XCLAIM",
            "XAUTOCLAIM",
        ],
        _first,
    ),
    **dict.fromkeys(["EXISTS", "DEL", "UNLINK"], _all),
    **dict.fromkeys(["TIME", "PUBLISH"], _none),
    "XGROUP": _second,
    "XREADGROUP": _streams,
    "XREAD": _streams,
}

_TOKEN = re.compile(
    r"""
    (?P<comment>--\[(?P<eq>=*)\[.*?\](?P=eq)\]|--[^\n]*)
  | (?P<string>'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|\[(?P<seq>=*)\[.*?\](?P=seq)\])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|[-+*/%^#<>=(){}\[\];:,.])
  | (?P<space>\s+)
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = frozenset(
    [
        "and",
        "break",
        "do",
        "else",
        "elseif",
        "end",
        "false",
        "for",
        "function",
        "goto",
        "if",
        "in",
        "local",
        "nil",
        "not",
        "or",
        "repeat",
        "return",
        "then",
        "true",
        "until",
        "while",
    ]
)
# An expression never continues with these: a statement or a block part begins.
_STATEMENT_WORDS = frozenset(
    [
        "local",
        "if",
        "then",
        "else",
        "elseif",
        "for",
        "while",
        "repeat",
        "until",
        "return",
        "end",
        "do",
        "break",
        "goto",
    ]
)
_LITERALS = frozenset(("true", "false", "nil"))
_OPENERS, _CLOSERS = {"(": ")", "[": "]", "{": "}"}, {")", "]", "}"}
_BINARY = frozenset(
    ["+", "-", "*", "/", "%", "^", "..", "==", "~=", "<", ">", "<=", ">=", "and", "or"]
)


def tokenize(source: str) -> list[str]:
    """The script's tokens, comments and white space dropped."""
    tokens: list[str] = []
    pos = source.index("\n") + 1 if source.startswith("#!") else 0  # the shebang
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise ValueError(f"cannot tokenize Lua at {source[pos : pos + 30]!r}")
        pos = m.end()
        if m.group("comment") is not None or m.group("space") is not None:
            continue
        tokens.append(m.group(0))
    return tokens


@attrs.define
class _Scope:
    """A function body (the main chunk is the outermost): its parameters and what each
    name is bound to inside it (by ``local`` or by plain assignment)."""

    parent: _Scope | None
    params: list[str] = attrs.Factory(list)
    bindings: dict[str, list[list[str]]] = attrs.Factory(dict)

    def lookup(self, name: str) -> tuple[_Scope, str] | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.bindings:
                return scope, "binding"
            if name in scope.params:
                return scope, "param"
            scope = scope.parent
        return None


@attrs.define
class _Use:
    """A command's key argument, or a local function's call site."""

    scope: _Scope
    what: str  # command name, or function name
    args: list[list[str]]


@attrs.define
class _Program:
    functions: dict[str, _Scope] = attrs.Factory(dict)
    commands: list[_Use] = attrs.Factory(list)
    calls: list[_Use] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)


def _closing(tokens: Sequence[str], i: int) -> int:
    """Index of the bracket closing the one at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] in _OPENERS:
            depth += 1
        elif tokens[j] in _CLOSERS:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {tokens[i]!r}")


def _split(tokens: Sequence[str]) -> list[list[str]]:
    """Split at top-level commas."""
    out: list[list[str]] = [[]]
    depth = 0
    for tok in tokens:
        if tok in _OPENERS:
            depth += 1
        elif tok in _CLOSERS:
            depth -= 1
        if tok == "," and depth == 0:
            out.append([])
        else:
            out[-1].append(tok)
    return [part for part in out if part]


def _ends_operand(tok: str) -> bool:
    if tok in (")", "]", "}") or tok in _LITERALS:
        return True
    return tok not in _KEYWORDS and tok[0] not in "+-*/%^#<>=~.,;:([{"


def _expression_list(tokens: Sequence[str], i: int) -> tuple[list[list[str]], int]:
    """The comma-separated expressions starting at ``i``; and where they end."""
    j, depth = i, 0
    while j < len(tokens):
        tok = tokens[j]
        if depth == 0 and j > i:
            prev = tokens[j - 1]
            if tok in _STATEMENT_WORDS or tok == ";":
                break
            # Two operands side by side: the next statement has begun.
            if (
                _ends_operand(prev)
                and prev not in _BINARY
                and _ends_operand(tok)
                and tok not in _BINARY
                and tok not in ("(", "[", ".", ":")
            ):
                break
        if tok in _OPENERS:
            depth += 1
        elif tok in _CLOSERS:
            depth -= 1
        j += 1
    return _split(tokens[i:j]), j


def _parse(tokens: list[str]) -> _Program:
    prog = _Program()
    scope = _Scope(None)
    blocks: list[tuple[str, _Scope | None]] = []  # (kind, the scope it opened)
    braces = 0  # inside a table constructor, "name =" is a field
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "{":
            braces += 1
        elif tok == "}":
            braces -= 1
        if tok == "function":
            j = i + 1
            name = ""
            if tokens[j] != "(":
                name = tokens[j]
                j += 1
            close = _closing(tokens, j)
            inner = _Scope(scope, params=[p for p in tokens[j + 1 : close] if p != ","])
            if name:
                prog.functions[name] = inner
                scope.bindings.setdefault(name, []).append(["function"])
            blocks.append(("function", scope))
            scope = inner
            i = close + 1
            continue
        if tok in ("if", "do", "repeat"):
            blocks.append((tok, None))
        elif tok in ("end", "until"):
            kind, outer = blocks.pop()
            if kind == "function" and outer is not None:
                scope = outer
        if tok == "local" and nxt == "function":
            i += 1
            continue
        if tok == "local":
            j = i + 1
            names = []
            while j < len(tokens) and tokens[j] not in ("=",) and tokens[j] not in _KEYWORDS:
                if tokens[j] != ",":
                    names.append(tokens[j])
                j += 1
            exprs: list[list[str]] = []
            if j < len(tokens) and tokens[j] == "=":
                j += 1
                exprs, _ = _expression_list(tokens, j)
            for k, name in enumerate(names):
                scope.bindings.setdefault(name, []).append(exprs[k] if k < len(exprs) else [])
            i = j  # the values are scanned for commands like any other code
            continue
        if (
            braces == 0
            and nxt == "="
            and re.fullmatch(r"[A-Za-z_]\w*", tok)
            and tok not in _KEYWORDS
            and (i == 0 or tokens[i - 1] not in (".", ":"))
        ):
            exprs, _ = _expression_list(tokens, i + 2)
            target = scope.lookup(tok)
            owner = target[0] if target else scope
            owner.bindings.setdefault(tok, []).append(exprs[0] if exprs else [])
            i += 2
            continue
        if tok == "redis" and nxt == "." and tokens[i + 2] in ("call", "pcall"):
            if tokens[i + 3] == "(":
                close = _closing(tokens, i + 3)
                _command(prog, scope, _split(tokens[i + 4 : close]))
            i += 3
            continue
        if tok == "pcall" and tokens[i + 1 : i + 5] == ["(", "redis", ".", "call"]:
            close = _closing(tokens, i + 1)
            _command(prog, scope, _split(tokens[i + 2 : close])[1:])
            i += 5
            continue
        if nxt == "(" and tok in prog.functions and (i == 0 or tokens[i - 1] != "function"):
            close = _closing(tokens, i + 1)
            prog.calls.append(_Use(scope, tok, _split(tokens[i + 2 : close])))
        i += 1
    return prog


def _command(prog: _Program, scope: _Scope, args: list[list[str]]) -> None:
    if not args or len(args[0]) != 1 or args[0][0][0] not in "'\"":
        prog.problems.append(f"a command that is not a string literal: {' '.join(args[0])}")
        return
    name = args[0][0].strip("'\"").upper()
    positions = KEY_POSITIONS.get(name)
    if positions is None:
        prog.problems.append(f"command {name}: unknown to the check; add its key positions")
        return
    rest = args[1:]
    prog.commands.append(_Use(scope, name, [rest[k] for k in positions(rest)]))


def _is_keys_item(expr: Sequence[str]) -> bool:
    return (
        len(expr) >= 4
        and expr[0] == "KEYS"
        and expr[1] == "["
        and _closing(expr, 1) == len(expr) - 1
    )


def _why_not(
    prog: _Program, expr: Sequence[str], scope: _Scope, seen: frozenset[tuple[str, int]]
) -> str | None:
    """None when ``expr`` is a key from ``KEYS``, else what makes it not one."""
    while len(expr) >= 2 and expr[0] == "(" and _closing(expr, 0) == len(expr) - 1:
        expr = expr[1:-1]
    if _is_keys_item(expr):
        return None
    shown = " ".join(expr)
    if len(expr) != 1 or not re.fullmatch(r"[A-Za-z_]\w*", expr[0]):
        return shown
    name = expr[0]
    found = scope.lookup(name)
    if found is None:
        return f"{name} (not a local)"
    owner, kind = found
    if (name, id(owner)) in seen:
        return f"{name} (bound to itself)"
    mark = seen | {(name, id(owner))}
    if kind == "binding":
        for value in owner.bindings[name] or [[]]:
            why = _why_not(prog, value, owner, mark) if value else f"{name} (no value)"
            if why is not None:
                return why if why.startswith(name) else f"{name} = {why}"
        return None
    # A parameter: every call of its function must pass a key from KEYS there.
    index = owner.params.index(name)
    function = next((f for f, s in prog.functions.items() if s is owner), "?")
    sites = [c for c in prog.calls if c.what == function]
    if not sites:
        return f"{name} (a parameter of {function}, which is never called)"
    for site in sites:
        if index >= len(site.args):
            return f"{name} (not passed by a call of {function})"
        why = _why_not(prog, site.args[index], site.scope, mark)
        if why is not None:
            return f"{name}, given {why} by a call of {function}"
    return None


def undeclared_keys(source: str) -> list[str]:
    """Every key argument of ``source``'s commands not taken from ``KEYS``, and every
    command the check cannot read; empty when the script is clean."""
    prog = _parse(tokenize(source))
    problems = list(prog.problems)
    for use in prog.commands:
        for arg in use.args:
            why = _why_not(prog, arg, use.scope, frozenset())
            if why is not None:
                problems.append(f"{use.what} on a key not from KEYS: {why}")
    return problems
