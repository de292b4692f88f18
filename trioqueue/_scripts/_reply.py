"""Small readers shared by the reply parsers: Redis replies arrive as bytes (or text,
from a client that decodes them), integers and nested lists."""

from __future__ import annotations

from typing import Any

from trioqueue._connection import as_text as text

__all__ = ["flag", "optional_text", "pairs", "text", "texts"]


def texts(values: Any) -> list[str]:
    """A list reply of strings as text."""
    return [text(v) for v in values]


def pairs(flat: Any) -> dict[Any, Any]:
    """A flat ``[name, value, ...]`` reply (a stream entry's fields) as a dict, values
    kept as they came."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def flag(value: Any) -> bool:
    """An integer reply (1 or 0) as a bool."""
    return bool(int(value))


def optional_text(value: Any) -> str | None:
    """A string reply that may be nil (a Lua ``false``) as text or None."""
    return None if value is None else text(value)
