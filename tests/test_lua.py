"""The Lua scripts as files: every key from KEYS, headers, error codes, includes, and no
Lua left inside Python modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.lua_keys import undeclared_keys
from trioqueue._errors import BrokerError, MessageTooLarge, QueueFull
from trioqueue._scripts import _codes, _members, _producer, _settle, _source
from trioqueue._scripts._codes import LeaseLost, reply_error
from trioqueue._scripts._source import Script, load

PACKAGE = Path(_source.__file__).resolve().parents[1]
LUA = PACKAGE / "_lua"
SCRIPTS = sorted(p.stem for p in LUA.glob("*.lua"))
INCLUDES = sorted(p.stem for p in (LUA / "includes").glob("*.lua"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_touches_only_keys_from_keys(name: str) -> None:
    assert undeclared_keys(load(name).source) == []


# Each of these derives a key inside the script, as the scripts did before every key
# was passed in KEYS; the check must report every one.
BUILT_KEYS = {
    "string.sub": "#!lua\nredis.call('PEXPIRE', string.sub(KEYS[1], 1, -8) .. ':unique:' .. "
    "ARGV[1], 10)",
    "concatenated local": "#!lua\nlocal stream = KEYS[1]\nlocal done = stream .. ':done'\n"
    "redis.call('RPUSH', done, '1')",
    "string.format": "#!lua\nredis.call('GET', string.format('%s:result:%s', ARGV[1], ARGV[2]))",
    "string.match": "#!lua\nlocal tag = string.match(KEYS[1], '^(.-})')\nredis.call('EXISTS', tag)",
    "function of a key": "#!lua\nlocal function unique_key(stream, job)\n"
    "  return string.sub(stream, 1, -8) .. ':unique:' .. job\nend\n"
    "local ukey = unique_key(KEYS[1], ARGV[1])\nredis.call('SET', ukey, '1')",
    "parameter given a built key": "#!lua\nlocal function store(key, doc)\n"
    "  redis.call('SET', key, doc)\nend\nstore(KEYS[1], 'a')\n"
    "store(KEYS[1] .. ':result', 'b')",
    "an argument": "#!lua\nredis.call('DEL', KEYS[1], ARGV[1])",
    "a value read from redis": "#!lua\nlocal other = redis.call('GET', KEYS[1])\n"
    "redis.call('DEL', other)",
    "pcall": "#!lua\nlocal ok = pcall(redis.call, 'XPENDING', KEYS[1] .. 'x', 'g')",
    "reassigned local": "#!lua\nlocal key = KEYS[1]\nkey = key .. ':x'\nredis.call('GET', key)",
    "unknown command": "#!lua\nredis.call('SUNION', KEYS[1], KEYS[2])",
    "command not a literal": "#!lua\nlocal cmd = ARGV[1]\nredis.call(cmd, KEYS[1])",
}


@pytest.mark.parametrize("source", BUILT_KEYS.values(), ids=BUILT_KEYS.keys())
def test_key_check_reports_a_key_built_inside_a_script(source: str) -> None:
    assert undeclared_keys(source)


def test_key_check_accepts_keys_handed_down_from_keys() -> None:
    source = """#!lua
-- a comment naming redis.call('DEL', 'x')
local function store(result, wait, doc)
  redis.call('SET', result, doc)
  if redis.call('EXISTS', wait) == 1 then redis.call('RPUSH', wait, '1') end
end
local stream, k = KEYS[1], tonumber(ARGV[1])
for i = 2, #ARGV do
  if ARGV[i] ~= '' then store(KEYS[k], KEYS[k + 1], ARGV[i]) end
end
local r = redis.call('XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', stream, '>')
redis.call('XGROUP', 'CREATE', (KEYS[1]), 'g', '0')
"""
    assert undeclared_keys(source) == []


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_file_starts_with_shebang_then_header(name: str) -> None:
    lines = (LUA / f"{name}.lua").read_text().splitlines()
    assert lines[0].startswith("#!lua")
    header = []
    for line in lines[1:]:
        if not line.startswith("--"):
            break
        header.append(line)
    assert header[0].startswith(f"-- {name}: ")
    for part in ("KEYS:", "ARGV:", "Reply:"):
        assert any(line.startswith(f"-- {part}") for line in header), part
    assert load(name).source.split("\n", 1)[0] == lines[0]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_error_codes_are_mapped_and_listed(name: str) -> None:
    text = (LUA / f"{name}.lua").read_text()
    codes = set(re.findall(r"redis\.error_reply\('([A-Z]+)", text))
    assert codes <= set(_codes.CODES)
    listed = re.search(r"^-- Errors: (.*)$", text, re.MULTILINE)
    assert codes == set(re.findall(r"\b[A-Z]{4,}\b", listed.group(1) if listed else ""))


def test_every_script_has_a_typed_call_and_every_include_is_used() -> None:
    loaded = {
        value.name: value
        for module in (_producer, _settle, _members)
        for value in vars(module).values()
        if isinstance(value, Script)
    }
    assert sorted(loaded) == SCRIPTS
    for include in INCLUDES:  # each defines the function it is named for
        assert any(f"local function {include}(" in s.source for s in loaded.values()), include


def test_no_lua_source_in_python_modules() -> None:
    lua = re.compile(r"redis\.p?call\(|^\s*local\s+\w+\s*=|\blocal function\b", re.M)
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if lua.search(path.read_text())
    ]
    assert offenders == []


def _with_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(_source, "lua_root", lambda: tmp_path)


def test_includes_are_expanded_once_after_the_shebang(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _with_files(
        monkeypatch,
        tmp_path,
        {
            "s.lua": "#!lua flags=allow-oom\n-- @include a\n-- @include b\nreturn f() + g()\n",
            "includes/a.lua": "-- @include b\nlocal function f() return g() end\n",
            "includes/b.lua": "local function g() return 1 end\n",
        },
    )
    source = load("s").source
    assert source == (
        "#!lua flags=allow-oom\nlocal function g() return 1 end\n"
        "local function f() return g() end\nreturn f() + g()\n"
    )
    assert load("s").sha == load("s").sha and len(load("s").sha) == 40


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"s.lua": "-- s\nreturn 1\n"}, "shebang"),
        ({"s.lua": "#!lua\n-- @include nope\n"}, "no include named 'nope'"),
        (
            {
                "s.lua": "#!lua\n-- @include a\n",
                "includes/a.lua": "-- @include b\n",
                "includes/b.lua": "-- @include a\n",
            },
            "include cycle a -> b -> a",
        ),
        ({"s.lua": "#!lua\n-- @include a\n", "includes/a.lua": "#!lua\n"}, "shebang"),
    ],
)
def test_bad_script_files_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    _with_files(monkeypatch, tmp_path, files)
    with pytest.raises(ValueError, match=message):
        load("s")


def test_reply_codes_become_errors_only_where_the_call_accepts_them() -> None:
    accepted = frozenset(_codes.CODES)
    full = reply_error("QUEUEFULL 10", queue="emails", accepted=accepted)
    assert isinstance(full, QueueFull) and (full.queue, full.max_length) == ("emails", 10)
    large = reply_error("TOOLARGE 300 200", queue="emails", accepted=accepted)
    assert isinstance(large, MessageTooLarge) and (large.size, large.limit) == (300, 200)
    assert isinstance(reply_error("FENCED lease lost", queue="q", accepted=accepted), LeaseLost)
    # coredis raises WRONGTYPE as a class and drops the code from the message.
    wrong = reply_error(
        "Operation against a key holding the wrong kind of value", queue="q", accepted=accepted
    )
    assert isinstance(wrong, BrokerError) and "another Redis type" in str(wrong)
    assert reply_error("QUEUEFULL 10", queue="q", accepted=frozenset({"FENCED"})) is None
    assert reply_error("ERR something else", queue="q", accepted=accepted) is None
