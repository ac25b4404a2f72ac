"""Path templates (`/rooms/{roomId}/state/{eventType}`): filled in, turned into the regex of the paths they
name, and a table that routes a request to its operation."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from contracts.validation.model import NoRoute, Operation, RouteMatch

# A template as (literal, parameter name) pairs; the name is empty after the last parameter.
_PARTS = re.compile(r"([^{]*)(?:\{([^}]+)\})?")


def fill_template(template: str, value: Callable[[str], str], *, literal: Callable[[str], str] = str) -> str:
    """The template with each `{name}` replaced by `value(name)`, each literal part by `literal(part)`."""
    return "".join(literal(text) + (value(name) if name else "") for text, name in _PARTS.findall(template))


def template_regex(template: str, *, empty_values: bool = False) -> re.Pattern[str]:
    """The paths a template names, each parameter a named group of one path segment, which may be empty
    only with `empty_values`."""
    segment = "[^/]*" if empty_values else "[^/]+"
    pattern = fill_template(template, lambda name: f"(?P<{name}>{segment})", literal=re.escape)
    return re.compile(f"^{pattern}$")


def _literal_weight(template: str) -> tuple[int, int]:
    return (-len(fill_template(template, lambda _: "")), template.count("{"))


class RouteTable:
    """The operations of one document by path template, the most literal template tried first. A parameter
    is one segment, so only the templates with as many slashes as the path can match it: the table is kept
    by that count."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        by_template: dict[str, dict[str, Operation]] = {}
        for operation in operations:
            by_template.setdefault(operation.path, {})[operation.method] = operation
        self._routes: dict[int, list[tuple[re.Pattern[str], dict[str, Operation]]]] = {}
        for template in sorted(by_template, key=_literal_weight):
            self._routes.setdefault(template.count("/"), []).append(
                (template_regex(template), by_template[template])
            )

    def find(self, method: str, path: str) -> RouteMatch | NoRoute:
        """The operation for a method (upper case) on a path as sent (percent-encoded, no query); path
        parameters come back decoded."""
        allowed: list[str] = []
        for regex, by_method in self._routes.get(path.count("/"), ()):
            matched = regex.match(path)
            if matched is None:
                continue
            operation = by_method.get(method)
            if operation is None:
                allowed.extend(by_method)
                continue
            return RouteMatch(operation, {k: unquote(v) for k, v in matched.groupdict().items()})
        return NoRoute("method", tuple(sorted(set(allowed)))) if allowed else NoRoute("path")
