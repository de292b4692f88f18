"""Pausing and resuming a queue: a flag in Redis that workers read, and a message on
the control channel that tells the running ones at once."""

from __future__ import annotations

from trioqueue import _scripts as scripts
from trioqueue._core._base import Core
from trioqueue._core._commands import Op
from trioqueue._keys import check_queue_name, control_channel


def set_paused(core: Core, queue: str, paused: bool) -> Op[bool]:
    """Pause (``paused``) or resume ``queue``; whether its state changed."""
    check_queue_name(queue)
    changed: bool = yield scripts.pause(
        core.keys(queue), paused=paused, channel=control_channel(core.prefix)
    )
    return changed
