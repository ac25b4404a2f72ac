"""Small JSON helpers shared by the checks and their messages: strict parsing, compact writing, JSON
pointers, a JSON value's type name and a bounded rendering of it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

_SHORT = 80
# Built once: json.dumps builds a new encoder whenever an argument differs from its defaults.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def compact_json(value: Any) -> str:
    """JSON without spaces and with non-ASCII text as it is, the way both servers write it."""
    return _COMPACT.encode(value)


def short(value: Any) -> str:
    """A compact, bounded rendering of a JSON value for messages."""
    try:
        text = compact_json(value)
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


def pointer_part(escaped: str) -> str:
    """One reference token of a JSON pointer, unescaped (RFC 6901: `~1` before `~0`)."""
    return escaped.replace("~1", "/").replace("~0", "~")


# The violation keyword for a string with a lone surrogate, wherever in the request it came.
UNENCODABLE = "unencodable"


class UnencodableText(ValueError):
    """A string holds a lone UTF-16 surrogate (JSON's `\\ud800` escape): valid JSON text, but not Unicode
    any store, journal or answer can encode. `reason` is Python's own words, the text Letta answers with."""

    def __init__(self, error: UnicodeEncodeError) -> None:
        self.reason = str(error)
        super().__init__(self.reason)


# Only an escape can put a surrogate into decoded JSON (raw surrogate bytes are not UTF-8): texts without
# one skip the walk.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def check_text(value: str) -> None:
    """Raise `UnencodableText` when `value` holds a lone surrogate (a valid pair decodes to one character)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise UnencodableText(error) from None


def check_strings(document: Any) -> None:
    """`check_text` for every string of a JSON document, keys included, at any depth (without recursing)."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            check_text(value)
        elif isinstance(value, dict):
            for key in value:
                check_text(key)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every call (json.loads with options builds a new one each time).
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity (what Synapse and FastAPI accept) and no lone surrogate
    in any string (`UnencodableText`). Every failure is a ValueError, nesting too deep for the decoder
    included. The one decoder of request bodies: nothing it returns can break an encoder later."""
    text = body.decode("utf-8")
    try:
        document = _STRICT_JSON.decode(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        check_strings(document)
    return document
