"""The compiled fast path in front of openapi-core's schema validators."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import jsonschema_rs
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator

from contracts.oas import to_json_schema, uses_keyword

# Which side of an exchange a schema is read for: OAS 3.0 drops readOnly properties from requests and
# writeOnly ones from responses.
Side = Literal["request", "response"]


class SchemaCheck:
    """openapi-core's validator for one schema behind a compiled fast path. Most instances are valid, and
    jsonschema-rs confirms that in microseconds; only an instance it refuses is walked by openapi-core,
    whose errors make the messages. The fast path only ever answers "valid", never invents an error, and
    exists only for schemas whose JSON Schema reading is exactly OpenAPI 3.0's (no `format`, `$ref`,
    `discriminator`, `readOnly` or `writeOnly`); a property test holds the two to agreement."""

    __slots__ = ("fast", "slow")

    def __init__(self, slow: Validator, fast: jsonschema_rs.Validator | None) -> None:
        self.slow = slow
        self.fast = fast

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.fast is not None and self.fast.is_valid(instance):
            return iter(())
        return self.slow.iter_errors(instance)


_NO_FAST_PATH = frozenset({"format", "$ref", "discriminator", "readOnly", "writeOnly"})


def fast_validator(schema: Any, *, side: Side) -> jsonschema_rs.Validator | None:
    """jsonschema-rs for a schema that reads the same as JSON Schema draft 4 (see `SchemaCheck`)."""
    if not isinstance(schema, dict) or uses_keyword(schema, _NO_FAST_PATH):
        return None
    return jsonschema_rs.Draft4Validator(to_json_schema(schema, side=side))


def first_error(validator: SchemaCheck, instance: Any) -> ValidationError | None:
    found: ValidationError | None = best_match(validator.iter_errors(instance))
    return found
