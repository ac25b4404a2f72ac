"""What the layers of one request share, in the ASGI scope's extensions: the `Exchange` record."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.types import Scope

from contracts.validation import Operation, Violation
from mockgen.faults import Fault
from mockgen.http.dialects import Dialect
from mockgen.http.routing import Route

EXTENSION = "mockgen"


@dataclass
class Exchange:
    """What the layers of one request learn about it: the outer layer routes it and reads its body, the
    dispatcher records what it did."""

    service: str
    body: bytes
    route: Route
    generation: int = 0  # the world's, when the request arrived
    operation: Operation | None = None  # the operation the request was dispatched to
    user: str | None = None
    fault: Fault | None = None
    drop: bool = False
    violations: list[Violation] = field(default_factory=list)

    @property
    def control(self) -> bool:
        """A control API request: answered in the control dialect, never journaled."""
        return self.route.control

    @property
    def dialect(self) -> Dialect:
        return self.route.dialect


def exchange_of(scope: Scope) -> Exchange:
    found: Exchange = scope["extensions"][EXTENSION]
    return found
