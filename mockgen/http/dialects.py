"""How each mocked service says no: error bodies, authentication, path quirks.

The request checks come from the contract (`contracts.validation`); a dialect only decides how a service
words the answer, so a violation found by the validator is answered in Matrix's `{"errcode", "error"}`, in
FastAPI's 422 list for Letta, or in the control API's `{"error"}`; a store's refusal likewise."""

from __future__ import annotations

import email.message
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.types import Scope, Send

from contracts.validation import JSON_MEDIA_TYPE, UNENCODABLE, Operation, RequestCheck, Violation
from mockgen.store.errors import ControlError, LettaError, MatrixError, UserInteractiveAuthRequired
from mockgen.store.matrix import User
from mockgen.store.matrix.errcodes import (
    M_BAD_JSON,
    M_INVALID_PARAM,
    M_LIMIT_EXCEEDED,
    M_MISSING_PARAM,
    M_MISSING_TOKEN,
    M_NOT_JSON,
    M_UNKNOWN,
    M_UNRECOGNIZED,
)
from mockgen.world import World

# The control API's credential, when the mock has one (`MockConfig.control_token`): a header of its own, so
# that a client can send it beside the Authorization header both services use for their own tokens.
CONTROL_TOKEN_HEADER = "X-Mock-Control-Token"
# Control calls that change the world. A browser sends a cross-origin POST without asking first (no
# preflight) only with a "simple" Content-Type (text/plain, a form); requiring JSON forces the preflight,
# which the mock never grants.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_PARAM_LOCATION = re.compile(r"^(query|path|header) parameter '(.+)'$|^header '(.+)'$")
_STATE_TRAILING_SLASH = re.compile(r"^(/_matrix/client/[^/]+/rooms/[^/]+/state/[^/]+)/$")


@dataclass
class Reply:
    """What a handler (or a dialect) answers: a status, a JSON body (None: no body) and headers. Another
    `media_type` (a proxy's `text/html` error page) sends `body`, a string, as its UTF-8 text."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = JSON_MEDIA_TYPE

    def encode(self) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The ASGI headers and body bytes: compact JSON (or the text), framed by the mock itself."""
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items()
        ]
        body = b""
        if self.body is not None and self.media_type != JSON_MEDIA_TYPE:
            body = str(self.body).encode("utf-8")
            headers.append((b"content-type", self.media_type.encode("latin-1")))
        elif self.body is not None:
            body = json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(body)).encode()))
        return headers, body

    async def send(self, send: Send) -> None:
        headers, body = self.encode()
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Credentials:
    user: User | None = None
    device_id: str | None = None
    token: str | None = None


def _bearer(headers: Mapping[str, str], *, case_sensitive: bool = False) -> tuple[str | None, bool]:
    """(token, well_formed) from the Authorization header."""
    header = headers.get("authorization")
    if header is None:
        return None, True
    parts = header.split(" ")
    scheme_ok = parts[0] == "Bearer" if case_sensitive else parts[0].lower() == "bearer"
    if len(parts) != 2 or not scheme_ok or not parts[1]:
        return None, False
    return parts[1], True


def _unencodable(violations: Sequence[Violation]) -> Violation | None:
    """The lone-surrogate violation, if any: it wins over every other, since an answer that echoed the
    offending value could not be encoded (Letta's 422 turns into this 400 for that reason)."""
    return next((v for v in violations if v.keyword == UNENCODABLE), None)


def _request_order(violation: Violation) -> int:
    """Servers look at the route, then query parameters, then the body."""
    if violation.location.startswith("path"):
        return 0
    if violation.location.startswith(("query", "header")):
        return 1
    return 2


def own_origins(scope: Scope) -> frozenset[str]:
    """The origins of the address and port a request arrived on (from the connection, not from the Host
    header, which a page on another site can make name this server through DNS rebinding)."""
    server = scope.get("server")
    if not server:
        return frozenset()
    scheme = str(scope.get("scheme", "http"))
    host, port = str(server[0]), int(server[1])
    named = f"{scheme}://[{host}]" if ":" in host else f"{scheme}://{host}"
    # A browser leaves the scheme's default port out of an origin.
    return frozenset({f"{named}:{port}", *([named] if DEFAULT_PORTS.get(scheme) == port else [])})


class Dialect:
    service: ClassVar[str]
    # FastAPI behind Letta's authentication middleware: a token is asked for before the path is routed,
    # and a path whose other spelling (trailing slash toggled) has a route answers 307 to it.
    authenticates_before_routing: ClassVar[bool] = False
    redirects_slashes: ClassVar[bool] = False
    # Synapse answers HEAD as GET; FastAPI's routes do not (405).
    head_as_get: ClassVar[bool] = True
    # A repeated scalar query parameter: Synapse reads the first value, FastAPI the last.
    last_query_value_wins: ClassVar[bool] = False

    def reread_body(
        self, operation: Operation, check: RequestCheck, body: bytes | None, content_type: str | None
    ) -> None:
        """Turn the validator's body violations into what this server makes of the body (default: as is)."""

    def normalize_path(self, path: str) -> str:
        return path

    def guard(self, world: World, scope: Scope, headers: Mapping[str, str]) -> Reply | None:
        """A refusal before the request is even routed (the services have none; the control API does)."""
        return None

    def not_found(self) -> Reply:
        raise NotImplementedError

    def method_not_allowed(self, allowed: Sequence[str]) -> Reply:
        reply = self.wrong_method(allowed)
        reply.headers["Allow"] = ", ".join(allowed)
        return reply

    def wrong_method(self, allowed: Sequence[str]) -> Reply:
        """The 405 body; `method_not_allowed` adds the Allow header every service sends with it."""
        raise NotImplementedError

    def internal_error(self) -> Reply:
        raise NotImplementedError

    @staticmethod
    def redirect(headers: Mapping[str, str], path: str, query_string: str) -> Reply:
        """FastAPI's trailing-slash redirect: 307 to the other spelling, on the host the client used."""
        host = headers.get("host", "localhost")
        query = f"?{query_string}" if query_string else ""
        return Reply(307, None, {"Location": f"http://{host}{path}{query}"})

    def invalid_request(self, violations: Sequence[Violation]) -> Reply:
        raise NotImplementedError

    def authenticate(
        self,
        world: World,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        required: bool,
        *,
        optional: bool = False,
    ) -> Credentials | Reply:
        raise NotImplementedError

    def rate_limited(self, retry_after_ms: int) -> Reply:
        raise NotImplementedError


class MatrixDialect(Dialect):
    service = "matrix"

    def normalize_path(self, path: str) -> str:
        # Synapse reads `/state/{type}/` (trailing slash) as the empty state key.
        matched = _STATE_TRAILING_SLASH.match(path)
        return matched.group(1) if matched else path

    @staticmethod
    def error(status: int, errcode: str, error: str, **extra: Any) -> Reply:
        return Reply(status, {"errcode": errcode, "error": error, **extra})

    def not_found(self) -> Reply:
        return self.error(404, M_UNRECOGNIZED, "Unrecognized request")

    def wrong_method(self, allowed: Sequence[str]) -> Reply:
        return self.error(405, M_UNRECOGNIZED, "Unrecognized request")

    def internal_error(self) -> Reply:
        return self.error(500, M_UNKNOWN, "Internal server error")

    def invalid_request(self, violations: Sequence[Violation]) -> Reply:
        if _unencodable(violations) is not None:
            # What Synapse answers for the same character sent as raw bytes; the escaped form makes it
            # answer 500 or nothing at all (specs/matrix.yaml, x-lone-surrogates).
            return self.error(400, M_NOT_JSON, "Content not JSON.")
        first = sorted(violations, key=_request_order)[0]
        if first.location.startswith("path"):
            return self.not_found()
        if first.keyword == "not-json":
            return self.error(400, M_NOT_JSON, "Content not JSON.")
        if first.location == "request body" and first.pointer == "" and first.keyword == "type":
            return self.error(400, M_BAD_JSON, "Content must be a JSON object.")
        if first.location.startswith(("query", "header")):
            default = M_MISSING_PARAM if first.keyword == "required" else M_INVALID_PARAM
            return self.error(400, first.errcode or default, first.message)
        default = M_MISSING_PARAM if first.keyword == "required" else M_BAD_JSON
        return self.error(400, first.errcode or default, first.message)

    def authenticate(
        self,
        world: World,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        required: bool,
        *,
        optional: bool = False,
    ) -> Credentials | Reply:
        token, well_formed = _bearer(headers, case_sensitive=True)
        if not well_formed:
            if not (required or optional):
                # Synapse never reads the header on login, login flows, register or register/available.
                return Credentials()
            return self.error(401, M_MISSING_TOKEN, "Invalid Authorization header.")
        if query.get("access_token"):
            if token is not None:
                return self.error(
                    401, M_MISSING_TOKEN, "Mixing Authorization headers and access_token query parameters."
                )
            token = query["access_token"][0]
        if token is None:
            if required:
                return self.error(401, M_MISSING_TOKEN, "Missing access token")
            return Credentials()
        if not (required or optional):
            # Synapse does not look at tokens on public endpoints (register refuses one being sent at all);
            # on endpoints with optional auth (/versions, profile reads) it checks one that is sent.
            return Credentials(token=token)
        try:
            user, device_id = world.matrix.authenticate(token)
        except MatrixError as exc:
            return error_reply(exc)
        return Credentials(user, device_id, token)

    def rate_limited(self, retry_after_ms: int) -> Reply:
        reply = self.error(429, M_LIMIT_EXCEEDED, "Too Many Requests", retry_after_ms=retry_after_ms)
        reply.headers["Retry-After"] = str(-(-retry_after_ms // 1000))
        return reply


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
        loc.extend(
            int(p) if p.isdigit() else p.replace("~1", "/").replace("~0", "~")
            for p in violation.pointer.split("/")[1:]
        )
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
        unencodable = _unencodable(violations)
        if unencodable is not None:
            # Letta's ValueError handler: 400 with Python's UnicodeEncodeError text (specs/letta.yaml,
            # x-lone-surrogates).
            return self.detail(400, unencodable.actual)
        return self.detail(422, [self.item(v) for v in sorted(violations, key=_request_order)])

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


class ControlDialect(Dialect):
    service = "control"

    @staticmethod
    def error(status: int, message: str) -> Reply:
        return Reply(status, {"error": message})

    def not_found(self) -> Reply:
        return self.error(404, "no such control route")

    def wrong_method(self, allowed: Sequence[str]) -> Reply:
        return self.error(405, f"method not allowed; use {', '.join(allowed)}")

    def internal_error(self) -> Reply:
        return self.error(500, "internal error in the mock")

    def invalid_request(self, violations: Sequence[Violation]) -> Reply:
        return self.error(400, "; ".join(v.message for v in violations))

    def guard(self, world: World, scope: Scope, headers: Mapping[str, str]) -> Reply | None:
        """Every control call, routed or not, in this order: an `Origin` other than the server's own is 403
        (a page in a browser), a missing or wrong control token 401 (when the mock has one), a write
        without a JSON Content-Type 415 (what a browser sends cross-origin without a preflight)."""
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in own_origins(scope):
            return self.error(
                403, f"Origin {origin} is not this server's: the control API takes no cross-origin calls"
            )
        expected = world.config.control_token
        # Constant time: the token is what keeps other local users out.
        if expected is not None and not hmac.compare_digest(
            headers.get(CONTROL_TOKEN_HEADER.lower(), "").encode("latin-1"), expected.encode("utf-8")
        ):
            return self.error(401, f"the control API needs the control token in {CONTROL_TOKEN_HEADER}")
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if scope["method"] in WRITE_METHODS and media != JSON_MEDIA_TYPE:
            return self.error(
                415, f"a control {scope['method']} needs Content-Type: {JSON_MEDIA_TYPE}, even without a body"
            )
        return None

    def authenticate(
        self,
        world: World,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        required: bool,
        *,
        optional: bool = False,
    ) -> Credentials | Reply:
        """Nobody to name: `guard` has checked the control token before routing."""
        return Credentials()

    def rate_limited(self, retry_after_ms: int) -> Reply:
        return self.error(429, "rate limited")


StoreError = MatrixError | UserInteractiveAuthRequired | LettaError | ControlError
STORE_ERRORS = (MatrixError, UserInteractiveAuthRequired, LettaError, ControlError)


def error_reply(error: StoreError) -> Reply:
    """A store's refusal in the words of the service whose store raised it."""
    if isinstance(error, MatrixError):
        return MatrixDialect.error(error.status, error.errcode, error.error, **error.extra)
    if isinstance(error, UserInteractiveAuthRequired):
        return Reply(401, error.body)
    if isinstance(error, LettaError):
        return LettaDialect.detail(error.status, error.detail)
    return ControlDialect.error(error.status, error.error)


DIALECTS: dict[str, Dialect] = {
    "matrix": MatrixDialect(),
    "letta": LettaDialect(),
    "control": ControlDialect(),
}
