"""The outermost layer of a mock server: one `Exchange` per request, from the first byte to the journal.

It routes the request (once: see `routing`), reads (and bounds) its body, lets the dispatcher answer, checks
the answer against the contract before a byte of it leaves (a mock answer that breaks the spec is a mock
bug, recorded and logged), and writes the journal entry. Dropping the connection (a fault, or a body over
the limit, which Synapse answers that way too) is carried out here, where the server's own `send` is still
at hand."""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.validation.sse import SSE_MEDIA_TYPE
from mockgen.http.context import EXTENSION, Exchange
from mockgen.http.dialects import Dialect
from mockgen.http.routing import Router
from mockgen.http.streaming import DROP_CONNECTION, ON_PURPOSE
from mockgen.world import World

log = logging.getLogger("mockgen")


def _close_connection(send: Send) -> bool:
    """Close the client connection without answering (uvicorn's `send` is bound to the connection's
    request cycle, which holds the transport)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.close()
    return True


class _Stream:
    """A `text/event-stream` answer passing through: forwarded message by message, kept for the journal."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.messages: list[Message] = []
        self.started = False
        self.on_purpose = False
        self.dropped = False

    def takes(self, message: Message) -> bool:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            self.started = headers.get(b"content-type", b"").startswith(SSE_MEDIA_TYPE.encode())
            self.on_purpose = bool(message.get(ON_PURPOSE, False))
        return self.started

    async def forward(self, message: Message) -> None:
        if self.dropped:
            return
        if message["type"] == DROP_CONNECTION:
            self.dropped = True
            _close_connection(self._send)
            # Let the server notice the closed connection before this request cycle ends.
            await asyncio.sleep(0)
            return
        self.messages.append(message)
        if message["type"] == "http.response.start":
            message = {k: v for k, v in message.items() if k != ON_PURPOSE}
        await self._send(message)


class ExchangeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        world: World,
        router: Router,
        validate_responses: bool = True,
    ) -> None:
        self.app = app
        self.world = world
        self.router = router
        self.validate_responses = validate_responses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # Route on the path as sent (percent-encoded), like Synapse: an id holding an encoded "/" stays one
        # path segment. Path parameters are decoded after routing.
        raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        path = self.router.dialect.normalize_path(raw.decode("latin-1"))
        scope = {**scope, "path": path, "raw_path": path.encode("latin-1")}
        body, too_large, disconnected = await self._read_body(receive)
        if disconnected:
            return
        exchange = Exchange(
            service=self.router.dialect.service,
            body=body,
            route=self.router.route(scope["method"], path),
            drop=too_large,
            generation=self.world.generation,
        )
        scope.setdefault("extensions", {})[EXTENSION] = exchange
        messages: list[Message] = []
        stream = _Stream(send)

        async def capture(message: Message) -> None:
            # A stream reaches the client event by event; anything else is checked before it leaves.
            if stream.takes(message):
                await stream.forward(message)
            else:
                messages.append(message)

        if not too_large:
            await self._call_app(scope, exchange.dialect, capture)
        if stream.started:
            self._finish_stream(scope, exchange, stream, started)
            return
        if exchange.drop:
            if _close_connection(send):
                # Let the server notice the closed connection before this request cycle ends.
                await asyncio.sleep(0)
            self._record(scope, exchange, 0, b"", None, started)
            return
        status, headers, response_body = self._collect(messages)
        variant = self._check_response(exchange, status, headers, response_body)
        # Journaled before it is sent: a client that has its answer finds it in the journal (sending
        # releases the GIL, and the client's thread could otherwise read the journal first).
        self._record(scope, exchange, status, response_body, variant, started)
        for message in messages:
            await send(message)

    def _finish_stream(self, scope: Scope, exchange: Exchange, stream: _Stream, started: float) -> None:
        """Journal a streamed answer; checked once it ended, unless it broke the contract on purpose."""
        status, headers, body = self._collect(stream.messages)
        variant = None
        # A dropped stream was cut on purpose (a fault, a script, the servers' stop).
        if not stream.on_purpose and not stream.dropped:
            variant = self._check_response(exchange, status, headers, body)
        self._record(scope, exchange, status, body, variant, started)

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
        except Exception:
            log.exception("mock handler failed for %s %s", scope["method"], scope["path"])
            await dialect.internal_error().send(capture)

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
        operation = exchange.operation
        if operation is None or exchange.control or not self.validate_responses:
            return None
        found, variant = exchange.route.validator.check_response(
            operation, status=status, headers=headers, body=body
        )
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
        # A request still running when the world was reset (a slow answer a test's client gave up on) is
        # not the next world's: it would show up in another test's journal.
        if exchange.control or exchange.generation != self.world.generation:
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
