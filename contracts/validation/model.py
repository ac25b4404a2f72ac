"""The compiled form of an OpenAPI document: operations with their parameters, bodies and responses (each
schema with its `SchemaCheck`), and what routing and checking a request produce."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from contracts.validation.fastpath import SchemaCheck
from contracts.validation.violations import Violation

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str  # path | query | header
    required: bool
    schema: Mapping[str, Any]
    validator: SchemaCheck
    is_array: bool
    item_type: str | None
    scalar_type: str | None
    explode: bool
    unrouted: bool = False
    example: Any = None

    @property
    def where(self) -> str:
        return (
            f"{self.location} parameter '{self.name}'"
            if self.location != "header"
            else f"header '{self.name}'"
        )


@dataclass(frozen=True, slots=True)
class Body:
    required: bool
    media_types: Mapping[str, tuple[Mapping[str, Any], SchemaCheck]]


def primary_media(
    media_types: Mapping[str, tuple[Mapping[str, Any], SchemaCheck]],
) -> tuple[Mapping[str, Any], SchemaCheck]:
    """The (schema, validator) of a body's JSON media type, else of the first one documented."""
    return media_types.get(JSON_MEDIA_TYPE) or next(iter(media_types.values()))


@dataclass(frozen=True, slots=True)
class Variant:
    title: str
    validator: SchemaCheck


@dataclass(frozen=True, slots=True)
class ResponseSpec:
    status: str
    description: str
    media_types: Mapping[str, tuple[Mapping[str, Any], SchemaCheck]]
    headers: Mapping[str, tuple[bool, Mapping[str, Any], SchemaCheck]]
    variants: Sequence[Variant]
    examples: Sequence[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    method: str  # upper case
    path: str  # the template, e.g. /_matrix/client/{version}/login
    params: Mapping[tuple[str, str], Param]
    body: Body | None
    responses: Mapping[str, ResponseSpec]
    security: Sequence[Mapping[str, Sequence[str]]]
    definition: Mapping[str, Any]

    @property
    def auth_required(self) -> bool:
        return bool(self.security) and all(requirement for requirement in self.security)

    @property
    def auth_optional(self) -> bool:
        """Anonymous access allowed, but a token that is sent is checked (`security: [{}, {scheme: []}]`)."""
        return any(not requirement for requirement in self.security) and any(self.security)

    @property
    def documented_statuses(self) -> list[int]:
        return sorted(int(code) for code in self.responses if code.isdigit())

    def response(self, status: int) -> ResponseSpec | None:
        return (
            self.responses.get(str(status))
            or self.responses.get(f"{str(status)[0]}XX")
            or self.responses.get("default")
        )


@dataclass(frozen=True, slots=True)
class RouteMatch:
    operation: Operation
    path_params: dict[str, str]


@dataclass(frozen=True, slots=True)
class NoRoute:
    """No operation for this request: `kind` is `path` (no path template matches) or `method` (the path
    matches, the method does not; `allowed` lists the methods that would)."""

    kind: Literal["path", "method"]
    allowed: tuple[str, ...] = ()

    def violation(self, method: str, path: str) -> Violation:
        expected = f"one of {', '.join(self.allowed)}" if self.allowed else "a documented path"
        actual = f"{method.upper()} {path.split('?', 1)[0]}"
        return Violation("request", None, "route", "", self.kind, expected, actual)


@dataclass(slots=True)
class RequestCheck:
    """A checked request. `unrouted`: an `x-unrouted` path parameter is off its schema, so the path names
    no route at all. Other path parameters are the server's to check: their violations are recorded but
    marked accepted, and the server answers them in its own words."""

    violations: list[Violation] = field(default_factory=list)
    unrouted: bool = False
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)
    path: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> list[Violation]:
        """The violations a server refuses (those it accepts anyway are only recorded)."""
        return [v for v in self.violations if not v.accepted]


@dataclass(slots=True)
class ExchangeCheck:
    operation: str | None
    violations: list[Violation]
    variant: str | None = None

    @property
    def ok(self) -> bool:
        return not self.violations
