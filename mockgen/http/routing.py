"""The one routing decision per request: which operation of which document, or why none (a 404, a 405 and
the methods allowed, Letta's trailing-slash 307). The outer layer makes it once and puts it in the
`Exchange`; the dispatcher and the response check read it."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.validation import ContractValidator, NoRoute, Operation, RouteMatch
from mockgen.http.dialects import Dialect

CONTROL_PREFIX = "/_mock/"


def is_control_path(path: str) -> bool:
    """Whether a path belongs to the control API (whose errors are its own `{"error"}` on both servers)."""
    return path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX.rstrip("/")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes. `control`: a control API path, checked against the control document and
    answered in its dialect. Without an operation, `redirect` is the other spelling of the path (trailing
    slash toggled) when the dialect redirects there; `needs_token` says whether the server asks for a token
    before it answers (the operation's, else the redirect target's, else yes)."""

    control: bool
    validator: ContractValidator
    dialect: Dialect
    found: RouteMatch | NoRoute
    redirect: str | None = None
    needs_token: bool = True

    @property
    def operation(self) -> Operation | None:
        return self.found.operation if isinstance(self.found, RouteMatch) else None


class Router:
    """Routes the requests of one mocked service: its own document, and the control API under `/_mock/`."""

    def __init__(
        self,
        *,
        validator: ContractValidator,
        dialect: Dialect,
        control_validator: ContractValidator,
        control_dialect: Dialect,
    ) -> None:
        self.validator = validator
        self.dialect = dialect
        self.control_validator = control_validator
        self.control_dialect = control_dialect

    def route(self, method: str, path: str) -> Route:
        """The route of a request: `path` as sent (percent-encoded, no query)."""
        control = is_control_path(path)
        validator, dialect = (
            (self.control_validator, self.control_dialect) if control else (self.validator, self.dialect)
        )
        found = validator.routes.find(method, path)
        if isinstance(found, NoRoute) and method == "HEAD" and "GET" in found.allowed and dialect.head_as_get:
            # HEAD is answered as GET (Synapse does; so did the Starlette router this replaces).
            found = validator.routes.find("GET", path)
        if isinstance(found, RouteMatch):
            return Route(control, validator, dialect, found, needs_token=found.operation.auth_required)
        if found.kind == "method":
            # The token the path's own operations ask for (Letta's health is exempt, whatever the method).
            sibling = validator.routes.find(found.allowed[0], path)
            needs = not isinstance(sibling, RouteMatch) or sibling.operation.auth_required
            return Route(control, validator, dialect, found, needs_token=needs)
        if not dialect.redirects_slashes:
            return Route(control, validator, dialect, found)
        other = path[:-1] if path.endswith("/") else path + "/"
        target = validator.routes.find(method, other)
        return Route(
            control,
            validator,
            dialect,
            found,
            redirect=None if isinstance(target, NoRoute) and target.kind == "path" else other,
            needs_token=not isinstance(target, RouteMatch) or target.operation.auth_required,
        )
