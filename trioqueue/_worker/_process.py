"""Handing a plain ``def`` handler to the process pool (``run_in="process"``), with the
job's context: ``current_job()`` answers in the child, and spans the child makes nest
under the job's span when the child has a tracer provider."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

from trioqueue import _tracing as tracing
from trioqueue._context import JobContext, _current
from trioqueue._handler import Handler


def process_target(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A picklable stand-in for ``fn``, to send to a child process.

    Pickle sends a function as its module and qualified name, and refuses one whose
    name now stands for another object. ``@app.handler`` does just that: the
    decorated name is bound to the ``Handler``. For such a function, send the name
    and call the ``Handler`` it names in the child (calling it calls the function).
    """
    qualname = getattr(fn, "__qualname__", "")
    found: Any = sys.modules.get(getattr(fn, "__module__", None) or "")
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, Handler) and found.fn is fn:
        return functools.partial(_call_by_name, fn.__module__, qualname)
    return fn


def _call_by_name(module: str, qualname: str, arg: Any) -> Any:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target(arg)


def in_child(
    target: Callable[[Any], Any], job: JobContext | None, trace: tracing.Trace, arg: Any
) -> Any:
    """Call ``target(arg)`` in the child as the job ``job`` (its span's context ``trace``)."""
    token = _current.set(job) if job is not None else None
    attached = tracing.attach(trace)
    try:
        return target(arg)
    finally:
        if attached is not None:
            tracing.detach(attached)
        if token is not None:
            _current.reset(token)
