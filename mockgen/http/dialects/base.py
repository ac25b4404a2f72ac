"""What every service's dialect shares: the reply a handler or a dialect gives, the credentials a request
carries, and the questions every dialect answers in its own words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.types import Scope, Send

from contracts.validation import (
    JSON_MEDIA_TYPE,
    UNENCODABLE,
    Operation,
    RequestCheck,
    Violation,
    compact_json,
)
from mockgen.store.matrix import User
from mockgen.world import World

DEFAULT_PORTS = {"http": 80, "https": 443}


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
            body = compact_json(self.body).encode("utf-8")
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


def bearer(headers: Mapping[str, str], *, case_sensitive: bool = False) -> tuple[str | None, bool]:
    """(token, well_formed) from the Authorization header."""
    header = headers.get("authorization")
    if header is None:
        return None, True
    parts = header.split(" ")
    scheme_ok = parts[0] == "Bearer" if case_sensitive else parts[0].lower() == "bearer"
    if len(parts) != 2 or not scheme_ok or not parts[1]:
        return None, False
    return parts[1], True


def unencodable_violation(violations: Sequence[Violation]) -> Violation | None:
    """The lone-surrogate violation, if any: it wins over every other, since an answer that echoed the
    offending value could not be encoded (Letta's 422 turns into this 400 for that reason)."""
    return next((v for v in violations if v.keyword == UNENCODABLE), None)


def request_order(violation: Violation) -> int:
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
