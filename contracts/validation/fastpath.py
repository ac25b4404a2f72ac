"""The compiled fast path in front of openapi-core's schema validators."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import jsonschema_rs
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from contracts.oas import SUBSCHEMAS, schema_keywords, to_json_schema, uses_keyword
from contracts.validation.json_values import pointer_part

# Which side of an exchange a schema is read for: OAS 3.0 drops readOnly properties from requests and
# writeOnly ones from responses.
Side = Literal["request", "response"]


class SchemaCheck:
    """openapi-core's validator for one schema behind a compiled fast path. Most instances are valid, and
    jsonschema-rs confirms that in microseconds; only an instance it refuses is walked by openapi-core,
    whose errors make the messages. The fast path only ever answers "valid", never invents an error, and
    exists only for schemas whose JSON Schema reading is exactly OpenAPI 3.0's (no `$ref`, `readOnly` or
    `writeOnly`; a `discriminator` and a `date-time` format only as `fast_validator` rewrites them); a
    property test holds the two to agreement."""

    __slots__ = ("fast", "slow")

    def __init__(self, slow: Validator, fast: jsonschema_rs.Validator | None) -> None:
        self.slow = slow
        self.fast = fast

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.fast is not None and self.fast.is_valid(instance):
            return iter(())
        return self.slow.iter_errors(instance)


_NO_FAST_PATH = frozenset({"$ref", "readOnly", "writeOnly"})
# Formats the fast path checks with openapi-core's own checker: those that only ever judge strings, which
# are all jsonschema-rs hands a format check (`int32` judges numbers: a schema with it gets no fast path).
_STRING_FORMATS = frozenset({"date-time"})
_UNIONS = ("oneOf", "anyOf", "allOf")


class _Unsupported(Exception):
    """A schema the fast path cannot read as openapi-core does."""


def fast_validator(
    schema: Any,
    *,
    side: Side,
    document: Mapping[str, Any] | None = None,
    format_checker: FormatChecker | None = None,
) -> jsonschema_rs.Validator | None:
    """jsonschema-rs for a schema that reads the same as JSON Schema draft 4 (see `SchemaCheck`), once its
    discriminated unions are spelled out (their mappings resolved in `document`, the resolved OpenAPI
    document) and its formats checked by `format_checker` (the slow validator's)."""
    if not isinstance(schema, dict) or uses_keyword(schema, _NO_FAST_PATH):
        return None
    try:
        schema = _spelled_out(schema, document)
    except _Unsupported:
        return None
    if uses_keyword(schema, _NO_FAST_PATH):  # a mapping's target may hold them too
        return None
    formats = _formats(schema)
    if not formats:
        return jsonschema_rs.Draft4Validator(to_json_schema(schema, side=side))
    if format_checker is None or not formats <= _STRING_FORMATS:
        return None
    checks: dict[str, Callable[..., bool]] = {
        name: functools.partial(_conforms, format_checker, name) for name in formats
    }
    return jsonschema_rs.Draft4Validator(
        to_json_schema(schema, side=side), formats=checks, validate_formats=True
    )


def _conforms(checker: FormatChecker, name: str, value: str) -> bool:
    return checker.conforms(value, name)


def _spelled_out(schema: Any, document: Mapping[str, Any] | None) -> Any:
    """`schema` with each discriminated union replaced by plain JSON Schema that reads it as
    openapi-schema-validator does (`_discriminated`)."""
    if isinstance(schema, list):
        return [_spelled_out(item, document) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "discriminator" in schema:
        schema = _discriminated(schema, document)
    spelled: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            spelled[key] = {name: _spelled_out(sub, document) for name, sub in value.items()}
        elif key in SUBSCHEMAS:
            spelled[key] = _spelled_out(value, document)
        else:
            spelled[key] = value
    return spelled


def _discriminated(schema: dict[str, Any], document: Mapping[str, Any] | None) -> dict[str, Any]:
    """openapi-schema-validator's reading of a `oneOf`, `anyOf` or `allOf` with a discriminator: an object
    whose discriminating property is set, valid against the schema the mapping names for its value alone.
    Spelled out for the explicit mapping only (a value it lacks is refused here and judged by the slow
    path, which also tries `#/components/schemas/<value>`): an object, the property required, and one
    branch per mapped value that holds only for that value."""
    unions = [key for key in _UNIONS if key in schema]
    discriminator = schema["discriminator"]
    name = discriminator.get("propertyName") if isinstance(discriminator, dict) else None
    mapping = discriminator.get("mapping") if isinstance(discriminator, dict) else None
    if len(unions) != 1 or not isinstance(name, str) or not isinstance(mapping, dict) or not mapping:
        raise _Unsupported
    branches = []
    for value, target in mapping.items():
        if not value or not isinstance(target, str):  # an empty value is "not set" to the slow path
            raise _Unsupported
        guard = {"properties": {name: {"enum": [value]}}}
        branches.append({"allOf": [guard, _resolved(target, document)]})
    rest = {key: sub for key, sub in schema.items() if key not in ("discriminator", unions[0])}
    union = {"type": "object", "required": [name], "anyOf": branches}
    return {**rest, "allOf": [union]}


def _resolved(target: str, document: Mapping[str, Any] | None) -> Any:
    """The schema a mapping's local reference (`#/components/schemas/...`) names in `document`."""
    if document is None or not target.startswith("#/"):
        raise _Unsupported
    node: Any = document
    for escaped in target[2:].split("/"):
        part = pointer_part(escaped)
        if not isinstance(node, Mapping) or part not in node:
            raise _Unsupported
        node = node[part]
    return node


def _formats(schema: Any) -> set[str]:
    """The `format` values `schema` uses anywhere (as a keyword, not a property name)."""
    return {str(value) for key, value in schema_keywords(schema) if key == "format"}


def first_error(validator: SchemaCheck, instance: Any) -> ValidationError | None:
    found: ValidationError | None = best_match(validator.iter_errors(instance))
    return found
