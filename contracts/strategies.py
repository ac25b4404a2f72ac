"""Hypothesis strategies derived from the specs: valid response bodies for every operation x documented
status x variant, and valid request bodies, leaning towards the edge cases clients get wrong.

Schemas are first turned from OpenAPI 3.0 into JSON Schema (`contracts.oas.to_json_schema`). The keywords
our specs use are then compiled once into Hypothesis's own strategies (`fixed_dictionaries`, `lists`,
`from_regex`, ...); anything outside that subset is handed to hypothesis-jsonschema. The split is for speed:
hypothesis-jsonschema rebuilds its sub-strategies on every draw (~25 ms for a two-field error object here),
which a fuzzer drawing several bodies per example cannot afford; compiled strategies draw in well under a
millisecond.

Every draw is biased towards edge cases but stays valid under the contract (a test checks each one with the
validator core): free-text strings come as empty, unicode, right-to-left, zero-width and very long text;
objects carry unknown extra fields where the contract allows them (servers add fields, clients must ignore
them); optional fields come and go; arrays are empty as often as not."""

from __future__ import annotations

import functools
import importlib
import json
import string
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Literal

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from contracts.oas import to_json_schema
from contracts.validation import ContractValidator, primary_media, validator_for

_ANNOTATIONS = frozenset({"title", "description", "default", "$comment"})
# The keywords `_compile` understands; a schema using anything else goes to hypothesis-jsonschema.
_COMPILED = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "pattern", "format",
     "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "allOf", "anyOf", "oneOf"}
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


_UNBOUNDED = 8  # how long `+`, `*` and `.` runs get in a pattern-built string
_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # lone surrogates cannot be encoded as UTF-8


def _class_alphabet(items: list[tuple[Any, Any]]) -> tuple[list[str], bool] | None:
    """The characters of a regex character class, and whether it is negated (None: not a simple class)."""
    chars: list[str] = []
    negated = False
    for op, value in items:
        name = str(op)
        if name == "NEGATE":
            negated = True
        elif name == "LITERAL":
            chars.append(chr(value))
        elif name == "RANGE":
            chars.extend(chr(c) for c in range(value[0], value[1] + 1))
        elif name == "CATEGORY" and str(value) == "CATEGORY_DIGIT":
            chars.extend("0123456789")
        else:
            return None
    return chars, negated


def _pattern_parts(parsed: Any) -> list[st.SearchStrategy[str]] | None:
    """Strategies for a parsed regex made of literals, classes and repeats (None: anything else)."""
    parts: list[st.SearchStrategy[str]] = []
    for op, value in parsed:
        name = str(op)
        if name == "AT":  # anchors
            continue
        if name == "LITERAL":
            parts.append(st.just(chr(value)))
            continue
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, body = value
            items = list(body)
            if len(items) != 1:
                return None
            high = min(high, low + _UNBOUNDED)
            inner_op, inner = items[0]
            alphabet = _alphabet(str(inner_op), inner)
            if alphabet is None:
                return None
            parts.append(st.text(alphabet=alphabet, min_size=low, max_size=high))
            continue
        alphabet = _alphabet(name, value)
        if alphabet is None:
            return None
        parts.append(st.text(alphabet=alphabet, min_size=1, max_size=1))
    return parts


def _alphabet(name: str, value: Any) -> st.SearchStrategy[str] | None:
    if name == "LITERAL":
        return st.just(chr(value))
    if name == "ANY":
        return st.characters(blacklist_characters="\n", blacklist_categories=_SURROGATES)
    if name == "IN":
        found = _class_alphabet(list(value))
        if found is None:
            return None
        chars, negated = found
        if negated:
            return st.characters(blacklist_characters="".join(chars) + "\n", blacklist_categories=_SURROGATES)
        return st.sampled_from(sorted(set(chars)))
    if name == "NOT_LITERAL":
        return st.characters(blacklist_characters=chr(value) + "\n", blacklist_categories=_SURROGATES)
    if name == "CATEGORY" and str(value) == "CATEGORY_DIGIT":
        return st.sampled_from("0123456789")
    return None


@functools.cache
def pattern_strings(pattern: str) -> st.SearchStrategy[str]:
    """Strings holding a match of `pattern` (JSON Schema patterns search, they do not anchor).

    Patterns made only of literals, classes and repeats are built from `st.text` directly: ~10x faster to
    draw than `st.from_regex`, which draws character by character (13 ms for an agent id here). Anything
    else (groups, alternation, lookarounds) goes to `st.from_regex`."""
    # The stdlib's own regex parser (typeshed has no stub for it), so the subset is read exactly as `re` does.
    regex_parser: Any = importlib.import_module("re._parser")
    parts = _pattern_parts(regex_parser.parse(pattern))
    if parts is None:
        # Python's `$` also matches before a final newline, which ECMA-262 (the dialect JSON Schema
        # names, and other tools use) does not: keep to strings both read alike.
        return st.from_regex(pattern).filter(lambda text: not text.endswith("\n"))
    return st.tuples(*parts).map("".join)


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


def _objects(schema: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = st.fixed_dictionaries(
        {name: _compile(properties.get(name, {})) for name in sorted(required)},
        optional={name: _compile(sub) for name, sub in properties.items() if name not in required},
    )
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return fixed
    values = _JSON_SCALARS if extra is True or extra == {} else _compile(extra)
    keys = _EXTRA_KEYS if extra is True else st.text(min_size=1, max_size=12)
    extras = st.dictionaries(keys.filter(lambda k: k not in properties), values, max_size=1)
    return st.builds(lambda known, unknown: {**unknown, **known}, fixed, extras)


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
    if not isinstance(schema, dict) or set(schema) - _COMPILED:
        return from_schema(schema)
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


def service_of(operation_id: str) -> str:
    for service in ("letta", "matrix", "control"):
        if operation_id in validator_for(service).operations:
            return service
    raise KeyError(f"no operation {operation_id!r} in the specs")


def documented_cells(validator: ContractValidator) -> list[tuple[str, int, str | None]]:
    """Every (operation, status, variant) the contract documents; variant is None for non-union bodies."""
    cells: list[tuple[str, int, str | None]] = []
    for operation in validator.iter_operations():
        for status in operation.documented_statuses:
            spec = operation.responses[str(status)]
            variants: list[str | None] = [v.title for v in spec.variants] or [None]
            cells.extend((operation.operation_id, status, variant) for variant in variants)
    return cells


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode("utf-8")
