"""OpenAPI 3.0 schemas as plain JSON Schema (draft 4), for the tools that speak only JSON Schema: the
generator (`contracts.strategies`) and the validator core's compiled fast path (jsonschema-rs).

The conversion keeps openapi-schema-validator's OAS 3.0.3 reading: `nullable: true` only widens the
`type` of the same schema object (an `enum` without null still refuses null, and a schema without a type
gains nothing); OpenAPI-only keywords and `x-` extensions go; `side="response"` drops `writeOnly`
properties and `side="request"` drops `readOnly` ones."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

# Keywords OpenAPI 3.0 adds to JSON Schema that mean nothing to a JSON Schema tool.
OPENAPI_ONLY = frozenset({"discriminator", "example", "examples", "externalDocs", "xml", "deprecated"})
# The keywords whose values are schemas (or lists of them); `properties` maps names to schemas.
SUBSCHEMAS = frozenset({"allOf", "anyOf", "oneOf", "items", "not", "additionalProperties"})


def to_json_schema(schema: Any, *, side: str = "response") -> Any:
    if isinstance(schema, list):
        return [to_json_schema(item, side=side) for item in schema]
    if not isinstance(schema, dict):
        return schema
    hidden = "writeOnly" if side == "response" else "readOnly"
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key in OPENAPI_ONLY or key.startswith("x-") or key in ("nullable", "readOnly", "writeOnly"):
            continue
        if key == "properties":
            converted[key] = {
                name: to_json_schema(sub, side=side)
                for name, sub in value.items()
                if not (isinstance(sub, dict) and sub.get(hidden))
            }
        elif key in SUBSCHEMAS:
            converted[key] = to_json_schema(value, side=side)
        else:
            converted[key] = copy.deepcopy(value)
    if schema.get("nullable") is True and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    return converted


def schema_keywords(schema: Any) -> Iterator[tuple[str, Any]]:
    """Every keyword of `schema` and of the schemas inside it, with its value (a property's name is not a
    keyword, whatever it is called)."""
    if isinstance(schema, list):
        for item in schema:
            yield from schema_keywords(item)
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key == "properties":
            for sub in value.values():
                yield from schema_keywords(sub)
            continue
        yield key, value
        if key in SUBSCHEMAS:
            yield from schema_keywords(value)


def uses_keyword(schema: Any, keywords: frozenset[str]) -> bool:
    """Whether any of `keywords` appears anywhere in `schema` (as a keyword, not a property name)."""
    return any(key in keywords for key, _ in schema_keywords(schema))
