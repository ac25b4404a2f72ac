"""Small JSON helpers shared by the checks and their messages: strict parsing, JSON pointers, a JSON value's
type name and a bounded rendering of it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

_SHORT = 80


def short(value: Any) -> str:
    """A compact, bounded rendering of a JSON value for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def json_pointer(path: Iterable[Any]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every call (json.loads with options builds a new one each time).
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only and no NaN/Infinity (what Synapse and FastAPI accept). Every failure is a
    ValueError, nesting too deep for the decoder included."""
    try:
        return _STRICT_JSON.decode(body.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
