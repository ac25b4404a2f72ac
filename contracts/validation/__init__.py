"""The validator core: (request, response) exchanges checked against one of our OpenAPI documents, each
violation worded as operation, where, JSON pointer, expected, got.

Built on openapi-core (OAS 3.0 schema validators, built once per schema) behind a jsonschema-rs fast path
that only ever says "valid". Modules, lowest first: `json_values`, `fastpath`, `violations`, `model`,
`routing`, `compile`, `checks`."""

from contracts.validation.checks import ContractValidator, validator_for
from contracts.validation.fastpath import SchemaCheck, Side, fast_validator
from contracts.validation.json_values import (
    UNENCODABLE,
    UnencodableText,
    check_text,
    compact_json,
    parse_json,
    pointer_part,
)
from contracts.validation.model import (
    HTTP_METHODS,
    JSON_MEDIA_TYPE,
    Body,
    ExchangeCheck,
    NoRoute,
    Operation,
    Param,
    RequestCheck,
    ResponseSpec,
    RouteMatch,
    Variant,
    primary_media,
)
from contracts.validation.routing import RouteTable, fill_template, template_regex
from contracts.validation.violations import Violation

__all__ = [
    "HTTP_METHODS",
    "JSON_MEDIA_TYPE",
    "UNENCODABLE",
    "Body",
    "ContractValidator",
    "ExchangeCheck",
    "NoRoute",
    "Operation",
    "Param",
    "RequestCheck",
    "ResponseSpec",
    "RouteMatch",
    "RouteTable",
    "SchemaCheck",
    "Side",
    "UnencodableText",
    "Variant",
    "Violation",
    "check_text",
    "compact_json",
    "fast_validator",
    "fill_template",
    "parse_json",
    "pointer_part",
    "primary_media",
    "template_regex",
    "validator_for",
]
