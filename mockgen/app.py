"""Build the two mock servers' ASGI apps from the specs.

spec → Connexion routing (operationId) → `Dispatcher` (contract check, faults, auth) → handler → store →
`ExchangeMiddleware` (response check, journal). Connexion's own request/response validation, security and
parameter-injection layers are left out of the stack: the contract check is `contracts.core` (one validator
for the mock, the client hook and the live checker), and Connexion's parameter decorator alone cost ~170 µs a
request here, more than everything else the mock does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import ModuleType

from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.resolver import Resolver
from starlette.types import ASGIApp

from contracts.core import ContractValidator, validator_for
from contracts.specs import resolved_copy
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
    routing = ConnexionMiddleware(dispatcher, middlewares=[RoutingMiddleware])
    resolver = Resolver(function_resolver=handlers.__getitem__)
    routing.add_api(resolved_copy(service), resolver=resolver)
    routing.add_api(resolved_copy("control"), resolver=resolver)
    return ExchangeMiddleware(
        routing,
        world=world,
        dialect=DIALECTS[service],
        validators=(validator, control_validator),
        validate_responses=world.config.validate,
    )
