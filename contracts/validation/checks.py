"""Checking exchanges against one compiled document: `ContractValidator`, what every adapter (the mock's
middleware, the aiohttp client hook, the recorded-exchange checker, the live checker) goes through.

openapi-core's own per-request entry points rebuild their schema validators and re-walk the document on
every call (about 5 ms a request here); the document is compiled once instead (see `compile`), and what is
left per call is the thin part: routing, casting parameters and wording jsonschema's errors."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from openapi_core.util import BOOLEAN_FALSE_VALUES, BOOLEAN_TRUE_VALUES

from contracts.specs import SPEC_FILES, Spec, load_resolved
from contracts.validation.compile import compile_operations
from contracts.validation.fastpath import first_error
from contracts.validation.json_values import UNENCODABLE, UnencodableText, check_text, parse_json, short
from contracts.validation.model import (
    ExchangeCheck,
    NoRoute,
    Operation,
    Param,
    RequestCheck,
    RouteMatch,
    primary_media,
)
from contracts.validation.routing import RouteTable
from contracts.validation.sse import SSE_MEDIA_TYPE, check_stream
from contracts.validation.violations import Violation, schema_violations


class ContractValidator:
    """One OpenAPI document, compiled for checking exchanges. Build it once (see `validator_for`)."""

    def __init__(self, spec: Spec, *, name: str = "api", check_spec: bool = True) -> None:
        self.name = name
        self.spec = spec
        self.operations = compile_operations(spec, name=name, check_spec=check_spec)
        self.routes = RouteTable(self.operations.values())

    def find(self, method: str, raw_path: str) -> RouteMatch | NoRoute:
        """The operation for a request path (percent-encoded or not); path parameters come back decoded."""
        return self.routes.find(method.upper(), raw_path.split("?", 1)[0])

    # -- requests

    def _cast(self, param: Param, raw: str) -> tuple[Any, Violation | None]:
        kind = param.item_type if param.is_array else param.scalar_type
        try:
            if kind == "integer":
                if not re.fullmatch(r"[+-]?\d+", raw.strip()):
                    raise ValueError(raw)
                return int(raw), None
            if kind == "number":
                return float(raw), None
            if kind == "boolean":
                lowered = raw.lower()
                if lowered in BOOLEAN_TRUE_VALUES:
                    return True, None
                if lowered in BOOLEAN_FALSE_VALUES:
                    return False, None
                raise ValueError(raw)
        except ValueError:
            return raw, Violation(
                side="request",
                operation=None,
                location=param.where,
                pointer="",
                keyword="type",
                expected=f"type {kind}",
                actual=f"string {short(raw)}",
                value=raw,
            )
        return raw, None

    def _check_param(
        self, operation: Operation, param: Param, raw_values: list[str] | None
    ) -> tuple[Any, list[Violation]]:
        op_id = operation.operation_id
        if not raw_values:
            if param.required:
                return None, [
                    Violation("request", op_id, param.where, "", "required", "a value", "nothing (missing)")
                ]
            return None, []
        if param.is_array:
            values = raw_values if param.explode else [v for raw in raw_values for v in raw.split(",")]
        else:
            values = [raw_values[0]]
        cast: list[Any] = []
        for raw in values:
            value, problem = self._cast(param, raw)
            if problem is not None:
                return raw, [
                    Violation(
                        "request",
                        op_id,
                        problem.location,
                        "",
                        problem.keyword,
                        problem.expected,
                        problem.actual,
                        value=raw,
                    )
                ]
            cast.append(value)
        typed: Any = cast if param.is_array else cast[0]
        found = schema_violations(
            param.validator, param.schema, typed, side="request", operation=op_id, location=param.where
        )
        return typed, found

    def check_request(
        self,
        operation: Operation,
        *,
        path_params: Mapping[str, str],
        query: str | Mapping[str, list[str]] = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> RequestCheck:
        """Check one request against its operation. `headers` keys must be lower case."""
        result = RequestCheck()
        query_values = parse_qs(query, keep_blank_values=True) if isinstance(query, str) else query
        header_values = headers or {}
        # Percent-decoding replaces what is not UTF-8, so HTTP cannot put a surrogate here; a caller handing
        # decoded values in could, and it gets the body's answer rather than a crash further on.
        texts = [(f"path parameter '{k}'", [k, v]) for k, v in path_params.items()]
        texts += [(f"query parameter '{k}'", [k, *v]) for k, v in query_values.items()]
        for location, values in texts:
            try:
                for text in values:
                    check_text(text)
            except UnencodableText as error:
                result.violations.append(_unencodable(operation.operation_id, location, error))
                return result
        for (location, name), param in operation.params.items():
            if location == "path":
                raw = path_params.get(name)
                typed, found = self._check_param(operation, param, [raw] if raw is not None else None)
                if found and param.unrouted:
                    result.unrouted = True
                result.violations.extend(
                    found if param.unrouted else [replace(v, accepted=True) for v in found]
                )
                result.path[name] = typed
            elif location == "query":
                typed, found = self._check_param(operation, param, query_values.get(name))
                result.violations.extend(found)
                if typed is not None:
                    result.query[name] = typed
            elif location == "header":
                value = header_values.get(name.lower())
                typed, found = self._check_param(operation, param, [value] if value is not None else None)
                result.violations.extend(found)
        if operation.body is not None:
            self._check_body(operation, body, content_type, result)
        return result

    def _check_body(
        self, operation: Operation, body: bytes | None, content_type: str | None, result: RequestCheck
    ) -> None:
        assert operation.body is not None
        op_id = operation.operation_id
        if not body:
            if operation.body.required:
                result.violations.append(
                    Violation(
                        "request", op_id, "request body", "", "not-json", "a JSON body", "an empty body"
                    )
                )
            return
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in operation.body.media_types:
            result.violations.append(
                Violation(
                    "request",
                    op_id,
                    "request content type",
                    "",
                    "content-type",
                    " or ".join(operation.body.media_types),
                    media or "no Content-Type",
                    accepted=True,
                )
            )
        schema, validator = primary_media(operation.body.media_types)
        try:
            result.body = parse_json(body)
        except UnencodableText as error:
            result.violations.append(_unencodable(op_id, "request body", error))
            return
        except ValueError as exc:
            result.violations.append(
                Violation(
                    "request", op_id, "request body", "", "not-json", "a JSON document", short(str(exc))
                )
            )
            return
        result.violations.extend(
            schema_violations(
                validator, schema, result.body, side="request", operation=op_id, location="request body"
            )
        )

    # -- responses

    def check_response(
        self,
        operation: Operation,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[list[Violation], str | None]:
        """Check one response; returns the violations and, for a union response body, the variant it is."""
        op_id = operation.operation_id
        spec = operation.response(status)
        if spec is None:
            return [
                Violation(
                    "response",
                    op_id,
                    "response status",
                    "",
                    "status",
                    "one of " + ", ".join(str(s) for s in operation.documented_statuses),
                    str(status),
                )
            ], None
        found: list[Violation] = []
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        for name, (required, schema, validator) in spec.headers.items():
            if name not in lowered:
                if required:
                    found.append(
                        Violation(
                            "response",
                            op_id,
                            f"response header '{name}'",
                            "",
                            "required",
                            "a value",
                            "nothing",
                        )
                    )
                continue
            raw = lowered[name]
            value: Any = raw
            if schema.get("type") == "integer" and re.fullmatch(r"[+-]?\d+", raw.strip()):
                value = int(raw)
            found.extend(
                schema_violations(
                    validator,
                    schema,
                    value,
                    side="response",
                    operation=op_id,
                    location=f"response header '{name}'",
                )
            )
        if not spec.media_types:
            return found, None
        if _is_event_stream(lowered) and SSE_MEDIA_TYPE in spec.media_types:
            stream_schema, stream_validator = spec.media_types[SSE_MEDIA_TYPE]
            found.extend(check_stream(stream_validator, stream_schema, body or b"", operation=op_id))
            return found, None
        if not body:
            found.append(
                Violation("response", op_id, "response body", "", "not-json", "a JSON body", "an empty body")
            )
            return found, None
        media = lowered.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in spec.media_types:
            found.append(
                Violation(
                    "response",
                    op_id,
                    "response content type",
                    "",
                    "content-type",
                    " or ".join(spec.media_types),
                    media or "no Content-Type",
                )
            )
        if media in spec.media_types and media.startswith("text/"):
            # A documented text body (a proxy's HTML error page): its schema is a string's.
            schema, validator = spec.media_types[media]
            text = body.decode("utf-8", "replace")
            return found + schema_violations(
                validator, schema, text, side="response", operation=op_id, location="response body"
            ), None
        schema, validator = primary_media(spec.media_types)
        try:
            document = parse_json(body)
        except ValueError as exc:
            found.append(
                Violation(
                    "response", op_id, "response body", "", "not-json", "a JSON document", short(str(exc))
                )
            )
            return found, None
        body_violations = schema_violations(
            validator, schema, document, side="response", operation=op_id, location="response body"
        )
        found.extend(body_violations)
        variant = None
        if not body_violations and spec.variants:
            variant = next(
                (v.title for v in spec.variants if first_error(v.validator, document) is None), None
            )
        return found, variant

    def check_body(self, operation: Operation, status: int, document: Any) -> list[Violation]:
        """Check an already-parsed response body against the documented schema for `status`."""
        spec = operation.response(status)
        if spec is None or not spec.media_types:
            return self.check_response(operation, status=status)[0] if spec is None else []
        schema, validator = primary_media(spec.media_types)
        return schema_violations(
            validator,
            schema,
            document,
            side="response",
            operation=operation.operation_id,
            location="response body",
        )

    # -- whole exchanges

    def check_exchange(
        self,
        *,
        method: str,
        path: str,
        query: str = "",
        request_headers: Mapping[str, str] | None = None,
        request_body: bytes | None = None,
        status: int,
        response_headers: Mapping[str, str] | None = None,
        response_body: bytes | None = None,
    ) -> ExchangeCheck:
        """Check a recorded (request, response) pair. Header names may have any case."""
        route = self.find(method, path)
        if isinstance(route, NoRoute):
            return ExchangeCheck(None, [route.violation(method, path)])
        operation = route.operation
        lowered = {k.lower(): v for k, v in (request_headers or {}).items()}
        request = self.check_request(
            operation,
            path_params=route.path_params,
            query=query or (path.split("?", 1)[1] if "?" in path else ""),
            headers=lowered,
            body=request_body,
            content_type=lowered.get("content-type"),
        )
        response_violations, variant = self.check_response(
            operation, status=status, headers=response_headers, body=response_body
        )
        return ExchangeCheck(operation.operation_id, request.violations + response_violations, variant)

    def iter_operations(self) -> Iterator[Operation]:
        return iter(self.operations.values())


_CACHE: dict[str, ContractValidator] = {}


def validator_for(name_or_path: str) -> ContractValidator:
    """The validator for `letta`, `matrix`, `control` or a spec file path; built once per process. A file
    outside the project is checked against the OpenAPI schema on load; the project's own specs are checked
    by its test suite."""
    found = _CACHE.get(name_or_path)
    if found is None:
        found = ContractValidator(
            load_resolved(name_or_path), name=name_or_path, check_spec=name_or_path not in SPEC_FILES
        )
        _CACHE[name_or_path] = found
    return found


def _is_event_stream(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower() == SSE_MEDIA_TYPE


def _unencodable(operation_id: str, location: str, error: UnencodableText) -> Violation:
    return Violation(
        "request", operation_id, location, "", UNENCODABLE, "text without lone surrogates", error.reason
    )
