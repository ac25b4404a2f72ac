"""The innermost layer: the request is routed (see `routing`); check it, apply faults and authentication,
and call the plain handler Connexion resolved for its operationId, or answer why there is no operation."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from contracts.validation import JSON_MEDIA_TYPE, UNENCODABLE, NoRoute, Operation, Violation
from mockgen.faults import Fault
from mockgen.http.context import Exchange, exchange_of
from mockgen.http.dialects import STORE_ERRORS, Dialect, Reply, error_reply
from mockgen.http.streaming import StreamReply
from mockgen.store.matrix import User
from mockgen.world import World

# The deepest JSON body the mock takes. Synapse takes whatever its decoder does (measured on 1.163: 900 levels
# accepted, 5000 answered M_NOT_JSON); the mock's copies and checks recurse per level, and past ~550 levels
# they exhaust the interpreter's frames. Deeper bodies are refused like undecodable ones, never a 500: a
# documented difference no client should meet.
MAX_JSON_DEPTH = 400


class Rejected(Exception):
    """Raised by `Call.reject`: answer these request violations now, in the service's words."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__(violations)
        self.violations = list(violations)


def _selects(violation: Violation, where: str) -> bool:
    """Whether `where` names this violation: "" the body as a whole (not JSON, not an object), "/field" a
    top-level body field and what is inside it, "?name" a query parameter."""
    if where.startswith("?"):
        return violation.location == f"query parameter '{where[1:]}'"
    if violation.location != "request body":
        return False
    if where == "":
        # A body with lone surrogates is no JSON the service can decode, like one that does not parse.
        undecodable = violation.keyword in ("not-json", UNENCODABLE)
        return undecodable or (violation.pointer == "" and violation.keyword == "type")
    return violation.pointer == where or violation.pointer.startswith(f"{where}/")


@dataclass
class Call:
    """Everything a handler gets: the world, the checked request and who sent it.

    `rejected` holds the request's violations when the handler orders its own checks (see `orders_checks`):
    it calls `reject` at the point the real server would look at each part, and `reject()` before acting."""

    world: World
    service: str
    operation: Operation
    path: Mapping[str, Any]
    query: Mapping[str, Any]
    body: Any
    headers: Mapping[str, str]
    user: User | None
    device_id: str | None
    token: str | None
    query_string: str
    rejected: tuple[Violation, ...] = ()
    fault: Fault | None = None  # a fault that lets the handler answer, e.g. to misbehave mid-stream

    def reject(self, *where: str) -> None:
        """Raise `Rejected` with the violations at `where` (see `_selects`); with no argument, all of them."""
        found = [v for v in self.rejected if not where or any(_selects(v, w) for w in where)]
        if found:
            raise Rejected(found)

    def ignore(self, *where: str) -> None:
        """Forget the violations at `where`: the server does not look at that part of this request."""
        self.rejected = tuple(v for v in self.rejected if not any(_selects(v, w) for w in where))

    @property
    def requester(self) -> User:
        """The authenticated user (only for operations that require a token)."""
        assert self.user is not None, f"{self.operation.operation_id} needs an authenticated user"
        return self.user


# A handler is a plain function; one that waits (a long-poll) is a coroutine function, and is awaited.
Answer = Reply | StreamReply
Handler = Callable[[Call], Answer] | Callable[[Call], Awaitable[Answer]]


def orders_checks(handler: Handler) -> Handler:
    """Mark a handler that is given the request's violations (`Call.rejected`) and answers them itself, in
    the order the real server checks things, instead of having them answered before it runs."""
    handler.orders_checks = True  # type: ignore[union-attr]
    return handler


class Dispatcher:
    def __init__(
        self,
        *,
        world: World,
        dialect: Dialect,
        handlers: Mapping[str, Handler],
    ) -> None:
        self.world = world
        self.dialect = dialect
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reply = await self.reply(scope, exchange_of(scope))
        if reply is not None:
            await reply.send(send)

    async def reply(self, scope: Scope, exchange: Exchange) -> Answer | None:
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query_string = scope.get("query_string", b"").decode("latin-1")
        query = parse_qs(query_string, keep_blank_values=True)
        # Before routing: the control API tells a caller it refuses nothing about itself, not even a 404.
        refused = exchange.dialect.guard(self.world, scope, headers)
        if refused is not None:
            return refused
        route = exchange.route
        if isinstance(route.found, NoRoute):
            return self._no_route(exchange, route.found, method, path, headers, query, query_string)
        control, dialect = exchange.control, exchange.dialect
        operation = exchange.operation = route.found.operation
        operation_id = operation.operation_id
        if dialect.last_query_value_wins:
            query = {
                name: values
                if (param := operation.params.get(("query", name))) and param.is_array
                else values[-1:]
                for name, values in query.items()
            }
        check = route.validator.check_request(
            operation,
            path_params=route.found.path_params,
            query=query,
            headers=headers,
            body=exchange.body,
            content_type=headers.get("content-type"),
        )
        dialect.reread_body(operation, check, exchange.body, headers.get("content-type"))
        if _nested_deeper_than(check.body, MAX_JSON_DEPTH):
            # First, so that every dialect answers it as its "not JSON" error.
            check.violations.insert(0, _too_deep(operation_id))
        rejected = check.rejected
        exchange.violations.extend(check.violations)
        if check.unrouted:
            # e.g. `/_matrix/client/v2/...`: the server has no such route (the spec documents the 404).
            return dialect.not_found()
        if not control:
            fault = self.world.faults.take(
                self.dialect.service,
                operation_id,
                method,
                path,
                applicable=lambda f: _documents(operation, f),
            )
            if fault is not None:
                exchange.fault = fault
                faulted = await self._fault_reply(operation, fault)
                if fault.drop_connection or exchange.generation != self.world.generation:
                    # Past a reset during the fault's latency, the request's world is gone: it reaches no
                    # handler of the new one.
                    exchange.drop = True
                    return None
                if faulted is not None:
                    return faulted
        credentials = dialect.authenticate(
            self.world, headers, query, route.needs_token, optional=operation.auth_optional
        )
        if isinstance(credentials, Reply):
            return credentials
        exchange.user = credentials.user.user_id if credentials.user else None
        handler = self.handlers[operation_id]
        ordered = getattr(handler, "orders_checks", False)
        if rejected and not ordered:
            return dialect.invalid_request(rejected)
        call = Call(
            world=self.world,
            service=self.dialect.service,
            operation=operation,
            path=check.path,
            query=check.query,
            body=check.body,
            headers=headers,
            user=credentials.user,
            device_id=credentials.device_id,
            token=credentials.token,
            query_string=query_string,
            rejected=tuple(rejected) if ordered else (),
            fault=exchange.fault,
        )
        return await self._call_handler(handler, call, dialect)

    def _no_route(
        self,
        exchange: Exchange,
        found: NoRoute,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        query_string: str,
    ) -> Reply:
        route, dialect = exchange.route, exchange.dialect
        # A method the path does not document is the client's violation, as a path nothing documents is.
        exchange.violations.append(found.violation(method, path))
        if dialect.authenticates_before_routing:
            # Letta's password middleware runs before the router: a wrong method without a token is 401.
            credentials = dialect.authenticate(self.world, headers, query, route.needs_token)
            if isinstance(credentials, Reply):
                return credentials
        if found.kind == "method":
            return dialect.method_not_allowed(found.allowed)
        if route.redirect is not None:
            return dialect.redirect(headers, route.redirect, query_string)
        return dialect.not_found()

    async def _fault_reply(self, operation: Operation, fault: Fault) -> Reply | None:
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.drop_connection or fault.status is None:
            return None
        if fault.retry_after_ms is not None and fault.status == 429 and not fault.has_body:
            reply = self.dialect.rate_limited(fault.retry_after_ms)
        else:
            reply = Reply(
                fault.status,
                fault.body if fault.has_body else default_body(operation, fault.status),
                media_type=documented_media(operation, fault.status),
            )
        reply.headers.update(fault.headers)
        return reply

    async def _call_handler(self, handler: Handler, call: Call, dialect: Dialect) -> Answer:
        try:
            result = handler(call)
            if inspect.isawaitable(result):
                return await result
            return result
        except Rejected as exc:
            return dialect.invalid_request(exc.violations)  # the control API's, for a control request
        except STORE_ERRORS as exc:
            return error_reply(exc)


def _nested_deeper_than(document: Any, limit: int) -> bool:
    """Whether a JSON document nests more than `limit` arrays/objects deep (counted without recursing)."""
    pending: list[tuple[Any, int]] = [(document, 1)] if isinstance(document, dict | list) else []
    while pending:
        value, depth = pending.pop()
        if depth > limit:
            return True
        items = value.values() if isinstance(value, dict) else value
        pending.extend((item, depth + 1) for item in items if isinstance(item, dict | list))
    return False


def _too_deep(operation_id: str) -> Violation:
    return Violation(
        "request",
        operation_id,
        "request body",
        "",
        "not-json",
        f"a JSON document nested at most {MAX_JSON_DEPTH} levels deep",
        "JSON nested too deeply",
    )


def _documents(operation: Operation, fault: Fault) -> bool:
    """A fault may only answer with a status the operation documents (latency and drops go anywhere)."""
    return fault.status is None or fault.drop_connection or operation.response(fault.status) is not None


def documented_media(operation: Operation, status: int) -> str:
    """The media type the operation documents for `status`: JSON where it documents JSON (or nothing)."""
    spec = operation.response(status)
    if spec is None or not spec.media_types or JSON_MEDIA_TYPE in spec.media_types:
        return JSON_MEDIA_TYPE
    return next(iter(spec.media_types))


def default_body(operation: Operation, status: int) -> Any:
    """The operation's first documented example for `status` (None when it documents no body)."""
    spec = operation.response(status)
    if spec is None or not spec.examples:
        return None
    return spec.examples[0][1]
