"""HTML built from escaped text: every value is escaped here, whatever its source.

Pages are server-rendered with the same column specs that ``static/dashboard.js`` uses
to re-render them from the JSON API: an element with ``data-f`` (a field) and ``data-k``
(its kind) is filled by both, by Python at first and by the script's ``textContent``
afterwards. Nothing from a message is ever markup.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

__all__ = ["Col", "cell", "e", "fmt", "layout", "table"]

# (label, field, kind): kinds are text, num, state, time, progress, details,
# link:<path prefix>, check, button:<action>:<label>.
Col = tuple[str, str, str]


def e(value: object) -> str:
    """``value`` as escaped text (quotes too, so it is safe in attributes)."""
    return escape(str(value), quote=True)


def fmt(value: Any, kind: str = "text") -> str:
    """The text a value is shown as, the same as ``fmt`` in dashboard.js."""
    if value is None or value == "":
        return "-"
    if kind == "time":
        if isinstance(value, int | float):
            when = dt.datetime.fromtimestamp(value, tz=dt.UTC)
        else:
            try:
                when = dt.datetime.fromisoformat(str(value))
            except ValueError:
                return str(value)
        return when.strftime("%Y-%m-%d %H:%M:%S")
    if kind == "progress":
        # A fraction as a percentage, rounded as JavaScript's Math.round does; any other
        # reported value as its JSON.
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            return f"{math.floor(value * 100 + 0.5)} %"
        return value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _state_class(value: object) -> str:
    return "".join(c for c in str(value).lower() if c.isalpha()) or "none"


def cell(field: str, kind: str, value: Any, root: str) -> str:
    """One element bound to ``field``: the markup dashboard.js fills in again."""
    bind = f'data-f="{e(field)}" data-k="{e(kind.split(":")[0])}"'
    if kind == "state":
        return f'<span class="state s-{_state_class(value)}" {bind}>{e(fmt(value))}</span>'
    if kind.startswith("link:"):
        prefix = kind.split(":", 1)[1]
        href = f"{root}{prefix}{quote(str(value), safe='')}"
        return f'<a href="{e(href)}" data-prefix="{e(prefix)}" {bind}>{e(fmt(value))}</a>'
    if kind == "details":  # long text (a traceback) folded away; the script fills the <pre>
        bind = f'data-f="{e(field)}" data-k="text"'
        return f"<details><summary>show</summary><pre {bind}>{e(fmt(value))}</pre></details>"
    if kind == "check":
        return f'<input type="checkbox" aria-label="select" value="{e(value)}" {bind}>'
    if kind.startswith("button:"):
        _, act, label = kind.split(":", 2)
        return (
            f'<button type="button" class="small act-{e(act)}" data-act="{e(act)}" '
            f'data-v="{e(value)}" {bind}>{e(label)}</button>'
        )
    return f"<span {bind}>{e(fmt(value, kind))}</span>"


def _td(col: Col, row: dict[str, Any], root: str) -> str:
    label, field, kind = col
    cls = "num" if kind == "num" else f"k-{kind.split(':')[0]}"
    return (
        f'<td class="{cls}" data-label="{e(label)}">{cell(field, kind, row.get(field), root)}</td>'
    )


def table(
    source: str, cols: Sequence[Col], rows: Iterable[dict[str, Any]], root: str, empty: str
) -> str:
    """A table of ``rows`` bound to the array ``source`` of the page's JSON document."""
    head = "".join(
        f'<th class="{"num" if k == "num" else ""}" scope="col">{e(label)}</th>'
        for label, _, k in cols
    )
    body = "".join(f"<tr>{''.join(_td(c, r, root) for c in cols)}</tr>" for r in rows)
    template = "".join(_td(c, {}, root) for c in cols)
    return (
        f'<div class="scroll"><table class="grid" data-rows="{e(source)}" data-empty="{e(empty)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body or _empty(len(cols), empty)}</tbody>"
        f"<template><tr>{template}</tr></template></table></div>"
    )


def _empty(span: int, text: str) -> str:
    return f'<tr class="empty"><td colspan="{span}">{e(text)}</td></tr>'


NAV = (("Overview", "/"), ("Workers", "/workers"), ("Jobs", "/jobs"))


def layout(
    title: str, body: str, *, root: str, csrf: str, api: str, interval: float, current: str
) -> str:
    """A whole page: nav, ``body`` (already HTML), the polling script."""
    nav = "".join(
        f'<a href="{e(root + href)}"{" aria-current=page" if href == current else ""}>{e(name)}</a>'
        for name, href in NAV
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{e(csrf)}"><meta name="root" content="{e(root)}">'
        f"<title>{e(title)} · trioqueue</title>"
        f'<link rel="stylesheet" href="{e(root)}/static/dashboard.css"></head><body>'
        f'<header><a class="brand" href="{e(root)}/">trioqueue</a><nav>{nav}</nav>'
        '<span class="live" id="live" role="status">live</span></header>'
        f'<main data-api="{e(root + api) if api else ""}" data-interval="{interval}">'
        f'<p class="banner" id="error" hidden></p>{body}</main>'
        f'<script src="{e(root)}/static/dashboard.js" defer></script></body></html>'
    )
