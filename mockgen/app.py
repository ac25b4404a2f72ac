"""Build the two mock servers' ASGI apps from the specs.

spec → `Router` (one routing decision per request) → `Dispatcher` (contract check, faults, auth) → handler →
store → `ExchangeMiddleware` (response check, journal). Connexion reads the specs at start-up and resolves
every operationId to its plain handler; it takes no part in a request. Its request/response validation,
security and parameter-injection layers are left out: the contract check is `contracts.validation` (one
validator for the mock, the client hook and the live checker), and Connexion's parameter decorator alone
cost ~170 µs a request here, more than everything else the mock does."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from starlette.types import ASGIApp

from contracts.specs import resolved_copy
from contracts.validation import validator_for
from mockgen.handlers import control as control_handlers
from mockgen.handlers import letta as letta_handlers
from mockgen.handlers import matrix as matrix_handlers
from mockgen.http.dialects import DIALECTS
from mockgen.http.dispatch import Dispatcher, Handler
from mockgen.http.exchange import ExchangeMiddleware
from mockgen.http.routing import Router
from mockgen.world import World

with warnings.catch_warnings():
    # Importing connexion imports starlette.testclient, which warns that it wants httpx2, and jsonschema's
    # RefResolver: deprecations in code the mock never runs (no test client, no connexion validation),
    # printed by every command and every user's test session.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    warnings.filterwarnings(
        "ignore", message=r"jsonschema\.(exceptions\.RefResolutionError|RefResolver) is deprecated"
    )
    from connexion.http_facts import METHODS
    from connexion.resolver import Resolver
    from connexion.spec import OpenAPISpecification

HANDLER_MODULES: Mapping[str, ModuleType] = {
    "letta": letta_handlers,
    "matrix": matrix_handlers,
    "control": control_handlers,
}


def handler_name(operation_id: str) -> str:
    """`getRoomStateWithKey` → `get_room_state_with_key`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


class _CheckedSpecification(OpenAPISpecification):  # type: ignore[misc]
    """Connexion's view of one of our documents, without Connexion's own check of it: openapi-spec-validator
    checks our documents in the test suite, and Connexion's check (~0.5 s for the three, in every process that
    builds a mock) was most of the mock's start-up time. Connexion has no switch for it."""

    @classmethod
    def _validate_spec(cls, spec: Any) -> None:
        return None


@functools.cache
def handlers_for(spec_name: str) -> Mapping[str, Handler]:
    """Every operation's handler by operationId, as Connexion's operations resolve it; built once per
    process. An operation without a handler fails here, at start-up, not at request time."""
    module = HANDLER_MODULES[spec_name]

    def handler(operation_id: str) -> Handler:
        found: Handler | None = getattr(module, handler_name(operation_id), None)
        if found is None:
            raise LookupError(
                f"{module.__name__} has no handler {handler_name(operation_id)} for {operation_id}"
            )
        return found

    specification = _CheckedSpecification(resolved_copy(spec_name))
    resolver = Resolver(function_resolver=handler)
    table: dict[str, Handler] = {}
    for path, item in specification["paths"].items():
        for method in item.keys() & METHODS:
            operation = specification.operation_cls.from_spec(
                specification, path=path, method=method, resolver=resolver
            )
            table[operation.operation_id] = operation.function
    return MappingProxyType(table)


def build_app(service: str, world: World) -> ASGIApp:
    """The ASGI app of one mocked service (`letta` or `matrix`), control API included."""
    dispatcher = Dispatcher(
        world=world,
        dialect=DIALECTS[service],
        handlers={**handlers_for(service), **handlers_for("control")},
    )
    router = Router(
        validator=validator_for(service),
        dialect=DIALECTS[service],
        control_validator=validator_for("control"),
        control_dialect=DIALECTS["control"],
    )
    return ExchangeMiddleware(
        dispatcher, world=world, router=router, validate_responses=world.config.validate
    )
