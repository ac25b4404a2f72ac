"""The outermost layer of a mock server: one `Exchange` per request, from the first byte to the journal.

It reads (and bounds) the request body, lets the Connexion-routed app answer, checks the answer against the
contract before a byte of it leaves (a mock answer that breaks the spec is a mock bug, recorded and logged),
and writes the journal entry. Dropping the connection (a fault, or a body over the limit, which Synapse
answers that way too) is carried out here, where the server's own `send` is still at hand."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.validation import ContractValidator, NoRoute, Operation, Violation
from mockgen.faults import Fault
from mockgen.http.dialects import DIALECTS, Dialect, Reply, is_control_path
from mockgen.world import World

log = logging.getLogger("mockgen")
EXTENSION = "mockgen"


@dataclass
class Exchange:
    """What the layers of one request learn about it."""

    service: str
    body: bytes
    control: bool  # a control API request: answered in the control dialect, never journaled
    dialect: Dialect
    operation: Operation | None = None
    validator: ContractValidator | None = None
    user: str | None = None
    fault: Fault | None = None
    drop: bool = False
    violations: list[Violation] = field(default_factory=list)


def encode_reply(reply: Reply) -> tuple[list[tuple[bytes, bytes]], bytes]:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()
    ]
    body = b""
    if reply.body is not None:
        body = json.dumps(reply.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    return headers, body


async def send_reply(send: Send, reply: Reply) -> None:
    headers, body = encode_reply(reply)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _close_connection(send: Send) -> bool:
    """Close the client connection without answering (uvicorn's `send` is bound to the connection's
    request cycle, which holds the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.close()
    return True


class ExchangeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        world: World,
        dialect: Dialect,
        validators: tuple[ContractValidator, ...],
        validate_responses: bool = True,
    ) -> None:
        self.app = app
        self.world = world
        self.dialect = dialect
        self.validators = validators
        self.validate_responses = validate_responses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Route on the path as sent (percent-encoded), like Synapse: an id holding an encoded "/" stays one
        # path segment. Path parameters are decoded after routing.
        raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = self.dialect.normalize_path(raw.decode("latin-1"))
        scope = {**scope, "path": path, "raw_path": path.encode("latin-1")}
        body, too_large, disconnected = await self._read_body(receive)
        if disconnected:
            return
        control = is_control_path(path)
        exchange = Exchange(
            service=self.dialect.service,
            body=body,
            control=control,
            dialect=DIALECTS["control"] if control else self.dialect,
            drop=too_large,
        )
        # One `extensions` dict shared by every copy of the scope the routing layer makes.
        scope.setdefault("extensions", {})[EXTENSION] = exchange
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        if not too_large:
            await self._call_app(scope, exchange.dialect, capture)
        if exchange.drop:
            if _close_connection(send):
                # Let the server notice the closed connection before this request cycle ends.
                await asyncio.sleep(0)
            self._record(scope, exchange, 0, b"", None, started)
            return
        status, headers, response_body = self._collect(messages)
        variant = self._check_response(exchange, status, headers, response_body)
        for message in messages:
            await send(message)
        self._record(scope, exchange, status, response_body, variant, started)

    async def _read_body(self, receive: Receive) -> tuple[bytes, bool, bool]:
        chunks: list[bytes] = []
        size = 0
        limit = self.world.config.max_body_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", False, True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", True, False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False, False

    async def _call_app(self, scope: Scope, dialect: Dialect, capture: Send) -> None:
        async def no_more_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        try:
            await self.app(scope, no_more_body, capture)
        except HTTPException as exc:
            # Starlette's router: the path exists, the method does not. The spec says which methods do.
            reply = dialect.not_found()
            if exc.status_code == 405:
                allowed = sorted({m for v in self.validators for m in self._allowed(v, scope["path"])})
                reply = dialect.method_not_allowed(allowed)
            await send_reply(capture, reply)
        except Exception:
            log.exception("mock handler failed for %s %s", scope["method"], scope["path"])
            await send_reply(capture, dialect.internal_error())

    @staticmethod
    def _allowed(validator: ContractValidator, path: str) -> tuple[str, ...]:
        route = validator.find("TRACE", path)
        return route.allowed if isinstance(route, NoRoute) else ()

    @staticmethod
    def _collect(messages: list[Message]) -> tuple[int, dict[str, str], bytes]:
        status = 500
        headers: dict[str, str] = {}
        body = b""
        for message in messages:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                body += message.get("body", b"")
        return status, headers, body

    def _check_response(
        self, exchange: Exchange, status: int, headers: dict[str, str], body: bytes
    ) -> str | None:
        operation, validator = exchange.operation, exchange.validator
        if operation is None or validator is None or exchange.control or not self.validate_responses:
            return None
        found, variant = validator.check_response(operation, status=status, headers=headers, body=body)
        if found:
            for violation in found:
                log.error("mock answer breaks the contract: %s", violation.message)
            exchange.violations.extend(found)
        return variant

    def _record(
        self,
        scope: Scope,
        exchange: Exchange,
        status: int,
        response_body: bytes,
        variant: str | None,
        started: float,
    ) -> None:
        if exchange.control:
            return
        self.world.journal.record(
            time=time.time(),
            service=exchange.service,
            operation=exchange.operation.operation_id if exchange.operation else None,
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            user=exchange.user,
            request_raw=exchange.body,
            status=status,
            response_raw=response_body,
            duration_ms=(time.perf_counter() - started) * 1000,
            fault=exchange.fault.id if exchange.fault else None,
            variant=variant,
            violations=exchange.violations,
        )
