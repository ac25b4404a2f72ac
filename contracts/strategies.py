"""Hypothesis strategies derived from the specs: valid response bodies for every operation x documented
status x variant, and valid request bodies, leaning towards the edge cases clients get wrong.

Schemas are first turned from OpenAPI 3.0 into JSON Schema (`contracts.oas.to_json_schema`). The keywords
our specs use are then compiled once into Hypothesis's own strategies (`fixed_dictionaries`, `lists`,
`from_regex`, ...); a schema with any other keyword is refused by name (`UnsupportedSchema`), so a spec
change that needs a new keyword fails every strategy test at once instead of drawing something else.

Why not hypothesis-jsonschema, which reads any schema: it rebuilds its sub-strategies on every draw (~25 ms
for a two-field error object here, too slow for a fuzzer drawing several bodies per example), and its
latest release (0.23.1) draws objects through a Hypothesis internal that Hypothesis 6.131.15 removed, so it
held Hypothesis back from two years of releases that cut its own cost per example.

Every draw is biased towards edge cases but stays valid under the contract (a test checks each one with the
validator core): free-text strings come as empty, unicode, right-to-left, zero-width and very long text;
objects carry unknown extra fields where the contract allows them (servers add fields, clients must ignore
them); optional fields come and go; arrays are empty as often as not."""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from hypothesis import strategies as st

from contracts.coverage import service_of
from contracts.oas import to_json_schema
from contracts.validation import primary_media, validator_for

_ANNOTATIONS = frozenset({"title", "description", "default", "$comment"})
# The keywords `_compile` understands; `not` only as "none of these properties" (`{"required": [...]}`).
_COMPILED = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "pattern", "format",
     "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "allOf", "anyOf", "oneOf",
     "minProperties", "maxProperties", "not"}
    | _ANNOTATIONS
)  # fmt: skip
MAX_ITEMS = 3

EDGE_STRINGS = [
    "",
    " ",
    "Ünïcödé ✓",
    "שלום עולם",  # right to left
    "مرحبا بالعالم",
    "emoji 🤖🦙",
    "zero\u200bwidth",
    "\u202eoverride",
    "line\nbreak",
    "a" * 300,
]


class UnsupportedSchema(ValueError):
    """A schema using a keyword (or a form of one) the strategies do not draw."""


_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.text(max_size=12))
_EXTRA_KEYS = st.text(alphabet=string.ascii_lowercase + "_.", min_size=1, max_size=12).map(lambda k: "x_" + k)


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    """Fold `allOf` parts that are plain object schemas into one (what our specs use allOf for)."""
    merged = {key: value for key, value in schema.items() if key != "allOf"}
    for raw_part in schema["allOf"]:
        part = _merge_all_of(raw_part) if "allOf" in raw_part else raw_part
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = sorted({*merged.get("required", []), *value})
            elif key not in merged:
                merged[key] = value
            elif merged[key] != value and key not in _ANNOTATIONS:
                raise ValueError(f"allOf parts disagree on {key!r}")
    return merged


@functools.cache
def pattern_strings(pattern: str) -> st.SearchStrategy[str]:
    """Strings that match `pattern` whole (JSON Schema patterns search, so a whole match satisfies them).

    ECMA-262, the dialect JSON Schema names, reads `\\d` and `\\w` as ASCII, where Python's `re` takes any
    Unicode digit or letter: drawn as ASCII. A whole match also keeps clear of Python's `$` matching before
    a final newline, which ECMA-262 does not."""
    return st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True)


def _strings(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" in schema:
        drawn = pattern_strings(schema["pattern"])
        return drawn.filter(lambda s: low <= len(s) <= (high if high is not None else len(s)))
    if schema.get("format") == "date-time":
        return st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat())
    edges = [text for text in EDGE_STRINGS if low <= len(text) <= (high if high is not None else len(text))]
    plain = st.text(min_size=low, max_size=min(high, 40) if high is not None else 40)
    return st.one_of(st.sampled_from(edges), plain) if edges else plain


def _absent(schema: Mapping[str, Any]) -> frozenset[str]:
    """The properties `not: {"required": [...]}` keeps out of an object (the one form of `not` drawn)."""
    if "not" not in schema:
        return frozenset()
    negated = schema["not"]
    if not isinstance(negated, dict) or set(negated) - _ANNOTATIONS != {"required"}:
        raise UnsupportedSchema(f"`not` is drawn only as {{'required': [...]}}, not {negated!r}")
    return frozenset(negated["required"])


def _objects(schema: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    absent = _absent(schema)
    if required & absent:
        raise UnsupportedSchema(f"properties {sorted(required & absent)} are both required and kept out")
    fixed = st.fixed_dictionaries(
        {name: _compile(properties.get(name, {})) for name in sorted(required)},
        optional={name: _compile(sub) for name, sub in properties.items() if name not in required | absent},
    )
    fewest, most = schema.get("minProperties", 0), schema.get("maxProperties")
    extra = schema.get("additionalProperties", True)
    if extra is False:
        drawn: st.SearchStrategy[dict[str, Any]] = fixed
    else:
        values = _JSON_SCALARS if extra is True or extra == {} else _compile(extra)
        keys = _EXTRA_KEYS if extra is True else st.text(min_size=1, max_size=12)
        # Unknown fields are forced only when the known ones cannot make up `minProperties` on their own.
        forced = max(0, fewest - len(properties))
        extras = st.dictionaries(
            keys.filter(lambda k: k not in properties and k not in absent),
            values,
            min_size=forced,
            max_size=max(forced, 1),
        )
        drawn = st.builds(lambda known, unknown: {**unknown, **known}, fixed, extras)
    if fewest or most is not None:
        return drawn.filter(lambda value: fewest <= len(value) <= (len(value) if most is None else most))
    return drawn


def _typed(schema: Mapping[str, Any], kind: str) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "string":
        return _strings(schema)
    if kind == "array":
        items = _compile(schema.get("items", {}))
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", MAX_ITEMS))
    if kind == "object":
        return _objects(schema)
    raise ValueError(f"unknown type {kind!r}")


def _compile(schema: Any) -> st.SearchStrategy[Any]:
    if schema is True or schema == {}:
        return _JSON_SCALARS
    if not isinstance(schema, dict):
        raise UnsupportedSchema(f"a schema is an object or true, not {schema!r}")
    unknown = set(schema) - _COMPILED
    if unknown:
        raise UnsupportedSchema(f"the strategies do not draw {', '.join(sorted(unknown))} (in {schema!r})")
    if "allOf" in schema:
        return _compile(_merge_all_of(schema))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    for union in ("oneOf", "anyOf"):
        if union in schema:
            base = {key: value for key, value in schema.items() if key != union}
            branches = [
                _compile(_merge_all_of({"allOf": [base, branch]}) if base else branch)
                for branch in schema[union]
            ]
            return st.one_of(branches)
    kinds = schema.get("type")
    if kinds is None:
        kinds = "object" if "properties" in schema else None
    if kinds is None:
        return _JSON_SCALARS
    if isinstance(kinds, list):
        return st.one_of([_typed(schema, kind) for kind in kinds])
    return _typed(schema, kinds)


def strategy_for(schema: Any, *, side: str = "response") -> st.SearchStrategy[Any]:
    """Values valid under an OpenAPI 3.0 schema, edge cases first."""
    return _compile(to_json_schema(schema, side=side))


@functools.cache
def _responses(service: str, operation_id: str, status: int, variant: str | None) -> st.SearchStrategy[Any]:
    operation = validator_for(service).operations[operation_id]
    spec = operation.response(status)
    if spec is None:
        raise KeyError(f"{operation_id} documents no {status}")
    if not spec.media_types:
        return st.none()
    schema = primary_media(spec.media_types)[0]
    if variant is not None:
        branches = {str(branch.get("title")): branch for branch in schema.get("oneOf", [])}
        if variant not in branches:
            raise KeyError(f"{operation_id} {status} has no variant {variant!r}; it has {sorted(branches)}")
        schema = branches[variant]
    return strategy_for(schema)


def response_bodies(
    operation_id: str, status: int, *, service: str | None = None, variant: str | None = None
) -> st.SearchStrategy[Any]:
    """Bodies the contract allows for `operation_id` answering `status` (one variant of a union, if asked)."""
    return _responses(service or service_of(operation_id), operation_id, status, variant)


@functools.cache
def _requests(service: str, operation_id: str) -> st.SearchStrategy[Any]:
    operation = validator_for(service).operations[operation_id]
    if operation.body is None:
        return st.none()
    return strategy_for(primary_media(operation.body.media_types)[0], side="request")


def request_bodies(operation_id: str, *, service: str | None = None) -> st.SearchStrategy[Any]:
    """Request bodies the contract allows for `operation_id`."""
    return _requests(service or service_of(operation_id), operation_id)


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")
