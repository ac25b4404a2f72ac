"""Build the two mock servers' ASGI apps from the specs.

spec → Connexion routing (operationId) → `Dispatcher` (contract check, faults, auth) → handler → store →
`ExchangeMiddleware` (response check, journal). Connexion's own request/response validation, security and
parameter-injection layers are left out of the stack: the contract check is `contracts.validation` (one
validator for the mock, the client hook and the live checker), and Connexion's parameter decorator alone cost
~170 µs a request here, more than everything else the mock does."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from connexion.middleware.routing import RoutingMiddleware
from connexion.resolver import Resolver
from connexion.spec import OpenAPISpecification
from starlette.routing import Mount, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.specs import resolved_copy
from contracts.validation import ContractValidator, validator_for
from mockgen.handlers import control as control_handlers
from mockgen.handlers import letta as letta_handlers
from mockgen.handlers import matrix as matrix_handlers
from mockgen.http.dialects import DIALECTS
from mockgen.http.dispatch import Dispatcher, Handler
from mockgen.http.exchange import ExchangeMiddleware
from mockgen.world import World

HANDLER_MODULES: Mapping[str, ModuleType] = {
    "letta": letta_handlers,
    "matrix": matrix_handlers,
    "control": control_handlers,
}


def handler_name(operation_id: str) -> str:
    """`getRoomStateWithKey` → `get_room_state_with_key`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


def handlers_for(spec_name: str, validator: ContractValidator) -> dict[str, Handler]:
    """Every operation's handler; an operation without one fails at start-up, not at request time."""
    module = HANDLER_MODULES[spec_name]
    found: dict[str, Handler] = {}
    for operation_id in validator.operations:
        handler = getattr(module, handler_name(operation_id), None)
        if handler is None:
            raise LookupError(
                f"{module.__name__} has no handler {handler_name(operation_id)} for {operation_id}"
            )
        found[operation_id] = handler
    return found


class _CheckedSpecification(OpenAPISpecification):  # type: ignore[misc]
    """Connexion's view of one of our documents, without Connexion's own check of it: openapi-spec-validator
    checks our documents in the test suite, and Connexion's check (~0.4 s a document, on every app built)
    was most of the mock's start-up time."""

    @classmethod
    def _validate_spec(cls, spec: Any) -> None:
        return None


@functools.cache
def _routing_spec(name: str) -> _CheckedSpecification:
    """Built once per process; routing only reads it."""
    return _CheckedSpecification(resolved_copy(name))


class _RaiseRoutingErrors:
    """Connexion's routing under the name Starlette looks for: with `scope["app"]` set, its router raises
    HTTPException (405 for a known path and another method) instead of answering in plain text, and
    `ExchangeMiddleware` answers in the service's own dialect. (ConnexionMiddleware sets it, too.)"""

    def __init__(self, routing: RoutingMiddleware) -> None:
        self.routing = routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        await self.routing(scope, receive, send)


def _without_slash_redirects(router: Router) -> None:
    """Turn off Starlette's trailing-slash redirect in Connexion's routers (the outer one, each API's, and the
    APIs chained as defaults): Synapse answers `/joined_rooms/` with 404, and Letta authenticates before it
    redirects, which `Dispatcher` does itself."""
    router.redirect_slashes = False
    inner = [route.app for route in router.routes if isinstance(route, Mount)]
    for app in [*inner, router.default]:
        if isinstance(app, Router):
            _without_slash_redirects(app)


def build_app(service: str, world: World) -> ASGIApp:
    """The ASGI app of one mocked service (`letta` or `matrix`), control API included."""
    validator = validator_for(service)
    control_validator = validator_for("control")
    handlers = {**handlers_for(service, validator), **handlers_for("control", control_validator)}
    dispatcher = Dispatcher(
        world=world,
        dialect=DIALECTS[service],
        validator=validator,
        control_validator=control_validator,
        handlers=handlers,
    )
    routing = RoutingMiddleware(dispatcher)
    resolver = Resolver(function_resolver=handlers.__getitem__)
    for name in (service, "control"):
        routing.add_api(_routing_spec(name), resolver=resolver)
    _without_slash_redirects(routing.router)
    return ExchangeMiddleware(
        _RaiseRoutingErrors(routing),
        world=world,
        dialect=DIALECTS[service],
        validators=(validator, control_validator),
        validate_responses=world.config.validate,
    )
