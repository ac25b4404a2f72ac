"""Letta's words: FastAPI's 422 lists with pydantic's wording, `{"detail"}` bodies, its authentication."""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from contracts.validation import UNENCODABLE, Operation, RequestCheck, Violation, pointer_part
from mockgen.http.dialects.base import (
    Credentials,
    Dialect,
    Reply,
    request_order,
    unencodable_violation,
)
from mockgen.world import World

_PARAM_LOCATION = re.compile(r"^(query|path|header) parameter '(.+)'$|^header '(.+)'$")


# FastAPI/pydantic words for the ways a value can fail, by JSON Schema keyword and expected type.
_PYDANTIC_TYPE = {
    "integer": ("int_parsing", "Input should be a valid integer, unable to parse string as an integer"),
    "number": ("float_parsing", "Input should be a valid number, unable to parse string as a number"),
    "boolean": ("bool_parsing", "Input should be a valid boolean, unable to interpret input"),
    "string": ("string_type", "Input should be a valid string"),
    "array": ("list_type", "Input should be a valid list"),
    "object": (
        "model_attributes_type",
        "Input should be a valid dictionary or object to extract fields from",
    ),
}


# Object-typed body fields that are plain dicts in Letta's pydantic models (the others are models).
_DICT_FIELDS = frozenset({("body", "metadata")})


def _fastapi_reads_json(content_type: str | None) -> bool:
    """FastAPI parses a body as JSON when there is no Content-Type, or its media type is application/json or
    application/*+json (read as `email.message` reads it: case-insensitive, parameters ignored)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _value_error(violation: Violation, loc: list[Any]) -> str | None:
    """The text of the pydantic validator Letta runs where the contract has a pattern, or None."""
    if violation.keyword != "pattern" or len(loc) != 2 or loc[0] != "body":
        return None
    if loc[1] == "name":
        return "Name contains invalid characters."
    if loc[1] in ("model", "embedding") and isinstance(violation.value, str):
        if "/" not in violation.value:
            return "not enough values to unpack (expected 2, got 1)"
        kind = "llm" if loc[1] == "model" else "embedding"
        return f"The {kind} config handle should be in the format provider/model-name"
    return None


class LettaDialect(Dialect):
    service = "letta"
    authenticates_before_routing = True
    redirects_slashes = True
    head_as_get = False
    last_query_value_wins = True

    def reread_body(
        self, operation: Operation, check: RequestCheck, body: bytes | None, content_type: str | None
    ) -> None:
        """FastAPI's reading of a body (`fastapi/routing.py`): no bytes or JSON `null` is a missing body; a
        media type it does not read as JSON leaves the raw text, which is not an object; undecodable JSON
        is `json_invalid` at the decoder's character offset."""
        if operation.body is None:
            return
        others = [v for v in check.violations if v.location != "request body"]
        op_id = operation.operation_id

        def body_is(keyword: str, expected: str, actual: str, value: Any = None) -> None:
            check.violations = [
                *others,
                Violation("request", op_id, "request body", "", keyword, expected, actual, value=value),
            ]

        if not body:
            body_is("required", "a JSON body", "an empty body")
        elif not _fastapi_reads_json(content_type):
            text = body.decode("utf-8", "replace")
            body_is("type", "type object", f"a {content_type} body", value=text)
            check.body = text
        elif any(v.location == "request body" and v.keyword == "not-json" for v in check.violations):
            try:
                json.loads(body)
            except json.JSONDecodeError as exc:
                body_is("not-json", "a JSON document", exc.msg, value=exc.pos)
            except (ValueError, RecursionError):
                pass  # too deep for a decoder, or a constant JSON does not have: the violation as checked
        elif any(v.keyword == UNENCODABLE for v in check.violations):
            return  # decoded, but holding lone surrogates: Letta's 400, not a missing body
        elif check.body is None:
            body_is("required", "a JSON body", "null")

    @staticmethod
    def detail(status: int, detail: Any) -> Reply:
        return Reply(status, {"detail": detail})

    def not_found(self) -> Reply:
        return self.detail(404, "Not Found")

    def wrong_method(self, allowed: Sequence[str]) -> Reply:
        return self.detail(405, "Method Not Allowed")

    def internal_error(self) -> Reply:
        return self.detail(500, "An internal server error occurred")

    @staticmethod
    def item(violation: Violation) -> dict[str, Any]:
        named = _PARAM_LOCATION.match(violation.location)
        if named is not None:
            kind = named.group(1) or "header"
            loc: list[Any] = [kind, named.group(2) or named.group(3)]
        else:
            loc = ["body"]
        loc.extend(int(p) if p.isdigit() else pointer_part(p) for p in violation.pointer.split("/")[1:])
        if violation.keyword == "not-json":
            # FastAPI: `loc` ends with the decoder's character offset, `ctx.error` its bare message.
            return {
                "type": "json_invalid",
                "loc": ["body", violation.value if isinstance(violation.value, int) else 0],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": violation.actual},
            }
        if (text := _value_error(violation, loc)) is not None:
            return {
                "type": "value_error",
                "loc": loc,
                "msg": f"Value error, {text}",
                "input": violation.value,
                "ctx": {"error": {}},
            }
        if violation.keyword == "required":
            return {"type": "missing", "loc": loc, "msg": "Field required", "input": None}
        if violation.keyword == "type":
            expected = violation.expected.removeprefix("type ")
            kind_name, msg = _PYDANTIC_TYPE.get(expected, ("value_error", violation.message))
            if loc[0] == "body" and kind_name.endswith("_parsing"):
                kind_name = kind_name.replace("_parsing", "_type")
            if expected == "object" and tuple(loc) in _DICT_FIELDS:
                kind_name, msg = "dict_type", "Input should be a valid dictionary"
            return {"type": kind_name, "loc": loc, "msg": msg, "input": violation.value}
        if violation.keyword in ("enum", "const"):
            return {
                "type": "enum",
                "loc": loc,
                "msg": f"Input should be {violation.expected}",
                "input": violation.value,
            }
        return {"type": "value_error", "loc": loc, "msg": violation.message, "input": violation.value}

    def invalid_request(self, violations: Sequence[Violation]) -> Reply:
        unencodable = unencodable_violation(violations)
        if unencodable is not None:
            # Letta's ValueError handler: 400 with Python's UnicodeEncodeError text (specs/letta.yaml,
            # x-lone-surrogates).
            return self.detail(400, unencodable.actual)
        return self.detail(422, [self.item(v) for v in sorted(violations, key=request_order)])

    def authenticate(
        self,
        world: World,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        required: bool,
        *,
        optional: bool = False,
    ) -> Credentials | Reply:
        if not required:
            return Credentials()
        # Letta's password middleware compares whole header values, scheme spelling included
        # (`letta/server/rest_api/middleware/check_password.py`): `bearer <pw>` is 401.
        password = world.config.letta_token
        if password is None:
            # Without LETTA_SERVER_SECURE, Letta 0.11.7 installs no password middleware: any Authorization
            # header, or none, is answered (probed: no header, `Bearer wrong`, `garbage`).
            return Credentials()
        if headers.get("authorization") == f"Bearer {password}":
            return Credentials(token=password)
        if headers.get("x-bare-password") == f"password {password}":
            return Credentials(token=password)
        return self.detail(401, "Unauthorized")

    def rate_limited(self, retry_after_ms: int) -> Reply:
        reply = self.detail(429, "Too Many Requests")
        reply.headers["Retry-After"] = str(-(-retry_after_ms // 1000))
        return reply
