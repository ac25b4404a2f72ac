"""What a corpus step's `compare` selectors pick out of an answer, made comparable between two runs: the
mock and the real server each have their own users, rooms, events and tokens, so those are masked (compared
by rule: a room id is a room id), and what comes out of a wildcard is sorted (Synapse lists state in no
particular order).

A selector is a path into the JSON body, `/`-separated, with `{name}` filled from the run's variables;
a segment `*` takes every item of a list (every value of an object), and `[key=value]` the items of a list
whose `key` is `value`. What a path does not reach is `<absent>` (for a single value) or left out (under a
wildcard)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

ABSENT = "<absent>"
_FILTER = re.compile(r"^\[([^=\]]+)=([^\]]*)\]$")
# The volatile parts of two runs: the run's prefix (contracts.harness.scenario.new_prefix), event and room
# ids (room version 12's hashes and older `!opaque:server` ids), and /sync and /messages tokens.
_MASKS = (
    (re.compile(r"cc[0-9a-f]{10}"), "<prefix>"),
    (re.compile(r"\$[A-Za-z0-9_-]{43}"), "$<event>"),
    (re.compile(r"![A-Za-z0-9_-]{43}|![A-Za-z]{18}:[^\s\"]+"), "!<room>"),
    (re.compile(r"^(?:s\d+(?:_\d+)*|t\d+-\d+(?:_\d+)*)$"), "<token>"),
)


def mask(value: Any) -> Any:
    if isinstance(value, str):
        for pattern, replacement in _MASKS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, dict):
        return {mask(key): mask(item) for key, item in value.items()}
    return value


def _step(found: list[Any], segment: str) -> list[Any]:
    picked: list[Any] = []
    wanted = _FILTER.match(segment)
    for value in found:
        if segment == "*":
            picked += (
                list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
            )
        elif wanted is not None:
            key, expected = wanted.groups()
            items = value if isinstance(value, list) else []
            picked += [item for item in items if isinstance(item, dict) and str(item.get(key)) == expected]
        elif isinstance(value, dict) and segment in value:
            picked.append(value[segment])
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            picked.append(value[int(segment)])
    return picked


def select(body: Any, selector: str) -> Any:
    """The masked value at `selector` (already filled in), or the sorted masked values of a wildcard."""
    segments = [part for part in selector.split("/")[1:] if part]
    found = [body]
    for segment in segments:
        found = _step(found, segment)
    many = any(part == "*" or _FILTER.match(part) for part in segments)
    if many:
        return sorted((mask(value) for value in found), key=lambda value: json.dumps(value, sort_keys=True))
    return mask(found[0]) if found else ABSENT


def project(body: Any, selectors: Sequence[str], fill: Mapping[str, str]) -> tuple[tuple[str, Any], ...]:
    """Each selector (as written, before filling) with what it selects of `body`."""
    placeholder = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
    return tuple(
        (selector, select(body, placeholder.sub(lambda m: str(fill.get(m.group(1), m.group(0))), selector)))
        for selector in selectors
    )
