"""The outcome document: what is stored under a job's result key when it settles."""

from __future__ import annotations

import time
from typing import Any

import orjson

__all__ = ["outcome_doc"]


def outcome_doc(state: str, **fields: Any) -> bytes:
    """The JSON document stored under a job's result key when it settles."""
    return orjson.dumps({"state": state, "finished": int(time.time() * 1000), **fields})
