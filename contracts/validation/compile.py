"""Compiling a document: openapi-core's OAS 3.0 schema validators (behind the fast path) built once per
schema, and every operation's parameters, body and responses gathered from the document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema_path import SchemaPath
from openapi_core import OpenAPI
from openapi_core.configurations import Config
from openapi_core.validation.schemas import (
    oas30_read_schema_validators_factory,
    oas30_write_schema_validators_factory,
)

from contracts.specs import Spec
from contracts.validation.fastpath import SchemaCheck, Side, fast_validator
from contracts.validation.model import HTTP_METHODS, Body, Operation, Param, ResponseSpec, Variant


def compile_operations(spec: Spec, *, name: str, check_spec: bool) -> dict[str, Operation]:
    """Every operation of the document by operationId (unique, or a ValueError)."""
    # openapi-core checks the document (openapi-spec-validator, ~0.25 s a document) and gives us its
    # SchemaPath. The project's own documents are checked by the test suite, so they may skip it.
    # openapi-core documents `spec_validator_cls=None` as "skip the check" (its type hint omits None).
    config = Config() if check_spec else Config(spec_validator_cls=None)  # type: ignore[arg-type]
    compiler = _Compiler(spec, OpenAPI.from_dict(spec, config=config))
    operations: dict[str, Operation] = {}
    paths: Mapping[str, Any] = spec.get("paths", {})
    for template, item in paths.items():
        for method in HTTP_METHODS:
            if method in item:
                operation = compiler.operation(template, method, item)
                if operation.operation_id in operations:
                    raise ValueError(f"{name}: operationId {operation.operation_id!r} is not unique")
                operations[operation.operation_id] = operation
    return operations


class _Compiler:
    def __init__(self, spec: Spec, openapi: OpenAPI) -> None:
        self.spec = spec
        self.openapi = openapi

    def _schema_path(self, *parts: str | int) -> SchemaPath:
        node: SchemaPath = self.openapi.spec
        for part in parts:
            node = node / part
        return node

    def _check(self, parts: Sequence[str | int], *, side: Side) -> SchemaCheck:
        factory = (
            oas30_write_schema_validators_factory
            if side == "request"
            else oas30_read_schema_validators_factory
        )
        schema_validator = factory.create(self.openapi.spec, self._schema_path(*parts))
        raw: Any = self.spec
        for part in parts:
            raw = raw[part]
        slow = schema_validator.validator
        # Every jsonschema validator has the attribute; the `Validator` protocol does not declare it.
        formats = getattr(slow, "format_checker", None)
        fast = fast_validator(raw, side=side, document=self.spec, format_checker=formats)
        return SchemaCheck(slow, fast)

    def operation(self, template: str, method: str, item: Mapping[str, Any]) -> Operation:
        definition: Mapping[str, Any] = item[method]
        base = ("paths", template, method)
        operation_id = str(definition.get("operationId") or f"{method.upper()} {template}")
        params: dict[tuple[str, str], Param] = {}
        for origin, param_list in (
            ("path-item", item.get("parameters", [])),
            ("operation", definition.get("parameters", [])),
        ):
            for index, raw in enumerate(param_list):
                parts: tuple[str | int, ...] = (
                    ("paths", template, "parameters", index)
                    if origin == "path-item"
                    else (*base, "parameters", index)
                )
                schema: Mapping[str, Any] = raw.get("schema", {})
                is_array = schema.get("type") == "array"
                items = schema.get("items", {}) if is_array else {}
                params[(raw["in"], raw["name"])] = Param(
                    name=raw["name"],
                    location=raw["in"],
                    required=bool(raw.get("required", raw["in"] == "path")),
                    schema=schema,
                    validator=self._check((*parts, "schema"), side="request"),
                    is_array=is_array,
                    item_type=items.get("type") if is_array else None,
                    scalar_type=None if is_array else schema.get("type"),
                    explode=bool(raw.get("explode", raw.get("style", "form") == "form")),
                    unrouted=bool(raw.get("x-unrouted", False)),
                    example=raw.get("example", schema.get("example")),
                )
        body: Body | None = None
        if "requestBody" in definition:
            request_body = definition["requestBody"]
            body = Body(
                required=bool(request_body.get("required", False)),
                media_types={
                    media: (
                        content.get("schema", {}),
                        self._check((*base, "requestBody", "content", media, "schema"), side="request"),
                    )
                    for media, content in request_body.get("content", {}).items()
                },
            )
        responses: dict[str, ResponseSpec] = {}
        for status, response in definition.get("responses", {}).items():
            rbase = (*base, "responses", str(status))
            media_types: dict[str, tuple[Mapping[str, Any], SchemaCheck]] = {}
            variants: list[Variant] = []
            examples: list[tuple[str, Any]] = []
            for media, content in response.get("content", {}).items():
                schema = content.get("schema", {})
                media_types[media] = (
                    schema,
                    self._check((*rbase, "content", media, "schema"), side="response"),
                )
                for index, branch in enumerate(schema.get("oneOf", [])):
                    variants.append(
                        Variant(
                            title=str(branch.get("title") or f"variant {index + 1}"),
                            validator=self._check(
                                (*rbase, "content", media, "schema", "oneOf", index), side="response"
                            ),
                        )
                    )
                if "example" in content:
                    examples.append(("example", content["example"]))
                examples.extend((name, ex.get("value")) for name, ex in content.get("examples", {}).items())
            headers = {
                header_name.lower(): (
                    bool(header.get("required", False)),
                    header.get("schema", {}),
                    self._check((*rbase, "headers", header_name, "schema"), side="response"),
                )
                for header_name, header in response.get("headers", {}).items()
            }
            responses[str(status)] = ResponseSpec(
                status=str(status),
                description=str(response.get("description", "")),
                media_types=media_types,
                headers=headers,
                variants=variants,
                examples=examples,
            )
        security = definition.get("security", self.spec.get("security", []))
        return Operation(
            operation_id=operation_id,
            method=method.upper(),
            path=template,
            params=params,
            body=body,
            responses=responses,
            security=security,
            definition=definition,
        )
