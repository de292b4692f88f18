"""The cattrs converter used at the wire boundary."""

from __future__ import annotations

from typing import Any

import cattrs
from cattrs.preconf.orjson import make_converter


def default_converter() -> cattrs.Converter:
    """A converter for message bodies: orjson-friendly, detailed errors."""
    return make_converter(detailed_validation=True)


def describe_structure_error(exc: BaseException) -> str:
    """One line naming each field that failed to structure."""
    if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        return "; ".join(cattrs.transform_error(exc, path="body"))
    return f"{type(exc).__name__}: {exc}"


def type_name_of(obj: Any) -> str:
    """The name a type is registered under by default: its ``__name__``."""
    return str(getattr(obj, "__name__", repr(obj)))
