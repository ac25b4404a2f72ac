"""A contract violation, and jsonschema's errors in its words: operation, where, JSON pointer, what was
expected and what came (discriminated unions narrowed to the branch meant, secrets never repeated)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from jsonschema.exceptions import ValidationError

from contracts.redaction import is_secret_path, redact_quoted
from contracts.validation.fastpath import SchemaCheck, Side
from contracts.validation.json_values import json_pointer, json_type, short


@dataclass(frozen=True, slots=True)
class Violation:
    """One way an exchange breaks the contract: who (side), which operation, where, what was expected."""

    side: Side
    operation: str | None
    location: str
    pointer: str
    keyword: str
    expected: str
    actual: str
    errcode: str | None = None
    accepted: bool = False
    value: Any = None

    @property
    def message(self) -> str:
        where = f"{self.location} at {self.pointer}" if self.pointer else self.location
        return f"{self.operation or '(no operation)'}: {where}: expected {self.expected}, got {self.actual}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "operation": self.operation,
            "location": self.location,
            "pointer": self.pointer,
            "keyword": self.keyword,
            "expected": self.expected,
            "actual": self.actual,
            "message": self.message,
        }

    def __str__(self) -> str:
        return self.message


# --- schema errors -> violations ------------------------------------------------------------------------


def _single_value_enum(schema: Any, prop: str) -> list[Any] | None:
    """The `enum` a (possibly allOf-composed) schema pins `prop` to, if any."""
    if not isinstance(schema, dict):
        return None
    prop_schema = schema.get("properties", {}).get(prop)
    if isinstance(prop_schema, dict) and isinstance(prop_schema.get("enum"), list):
        return list(prop_schema["enum"])
    for part in schema.get("allOf", ()):
        found = _single_value_enum(part, prop)
        if found is not None:
            return found
    return None


def _discriminator(schema: Mapping[str, Any], branches: Sequence[Any]) -> str | None:
    """The property that tells the branches apart: the declared discriminator, or a property every branch
    pins to its own enum (an implicit one)."""
    declared = schema.get("discriminator")
    if isinstance(declared, dict) and isinstance(declared.get("propertyName"), str):
        return str(declared["propertyName"])
    candidates: set[str] | None = None
    for branch in branches:
        names = {
            name
            for name in _property_names(branch)
            if (enum := _single_value_enum(branch, name)) is not None and len(enum) == 1
        }
        candidates = names if candidates is None else candidates & names
    return sorted(candidates)[0] if candidates else None


def _property_names(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", ()):
        names |= _property_names(part)
    return names


def _branch_type(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return None
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    for part in schema.get("allOf", ()):
        found = _branch_type(part)
        if found:
            return found
    return None


def _type_matches(declared: str, value: Any) -> bool:
    actual = json_type(value)
    return declared == actual or (declared == "number" and actual == "integer")


def _narrow(error: ValidationError) -> list[ValidationError]:
    """Replace a oneOf/anyOf failure by the errors of the branch the instance was meant to be, when that can
    be told: by a discriminator (declared, or a property every branch pins to its own value), or because only
    one branch has the instance's type. openapi-schema-validator already follows a declared discriminator
    that names a known branch; what is left here is a missing or unknown discriminating value."""
    if error.validator not in ("oneOf", "anyOf") or not isinstance(error.validator_value, list):
        return [error]
    branches = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    chosen: int | None = None
    prop = _discriminator(schema, branches)
    if prop is not None and isinstance(error.instance, dict):
        if prop not in error.instance:
            return [
                ValidationError(
                    f"{prop!r} is a required property",
                    validator="required",
                    validator_value=[prop],
                    instance=error.instance,
                    schema_path=["discriminator"],
                    parent=error,
                )
            ]
        value = error.instance[prop]
        known: list[Any] = []
        for index, branch in enumerate(branches):
            values = _single_value_enum(branch, prop) or []
            known.extend(values)
            if chosen is None and value in values:
                chosen = index
        if chosen is None:
            return [
                ValidationError(
                    f"{value!r} is not one of {known!r}",
                    validator="enum",
                    validator_value=known,
                    instance=value,
                    path=[prop],
                    schema_path=["discriminator"],
                    parent=error,
                )
            ]
    else:
        typed = [
            i for i, b in enumerate(branches) if (t := _branch_type(b)) and _type_matches(t, error.instance)
        ]
        if len(typed) == 1 and all(_branch_type(b) for b in branches):
            chosen = typed[0]
    if chosen is None or not error.context:
        return [error]
    inner = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == chosen]
    if not inner:
        return [error]
    narrowed: list[ValidationError] = []
    for sub in inner:
        narrowed.extend(_narrow(sub))
    return narrowed


_REQUIRED_MESSAGE = re.compile(r"^'(.*)' is a required property$", re.DOTALL)


def _missing_property(error: ValidationError) -> str | None:
    """The property a `required` error is about (jsonschema yields one error per missing property)."""
    if error.validator != "required" or not isinstance(error.instance, dict):
        return None
    named = _REQUIRED_MESSAGE.match(error.message)
    if named is not None:
        return named.group(1)
    required: list[Any] = list(error.validator_value)  # type: ignore[arg-type]
    return next((str(name) for name in required if name not in error.instance), None)


def _describe(error: ValidationError, shown: Any) -> tuple[str, str]:
    """(expected, actual) for a jsonschema error, in words; `shown` is the instance as it may be quoted
    (`redact_quoted`)."""
    keyword, value, instance = (
        str(error.validator),
        cast(Any, error.validator_value),
        cast(Any, error.instance),
    )
    if keyword == "type":
        return f"type {value}", "null" if instance is None else f"{json_type(instance)} {short(shown)}"
    if keyword == "required":
        return f"property '{_missing_property(error)}'", "nothing (missing)"
    if keyword in ("enum", "const"):
        options = value if keyword == "enum" else [value]
        return "one of " + ", ".join(short(v) for v in options), short(shown)
    if keyword == "pattern":
        return f"a string matching /{value}/", short(shown)
    if keyword in ("maxLength", "minLength"):
        bound = "at most" if keyword == "maxLength" else "at least"
        return f"{bound} {value} characters", f"{len(instance)} characters"
    if keyword in ("maxItems", "minItems"):
        bound = "at most" if keyword == "maxItems" else "at least"
        return f"{bound} {value} items", f"{len(instance)} items"
    if keyword in ("maximum", "minimum"):
        return f"a number {'<=' if keyword == 'maximum' else '>='} {value}", short(shown)
    if keyword == "additionalProperties":
        return "no undocumented properties", error.message
    if keyword == "format":
        return f"format '{value}'", short(shown)
    if keyword == "oneOf":
        if "is valid under each of" in error.message:
            return "exactly one matching alternative", "a value matching several"
        return f"one of {len(value)} alternatives", short(shown)
    if keyword == "anyOf":
        return f"any of {len(value)} alternatives", short(shown)
    # jsonschema's own words quote the instance whole: only when nothing of it had to be hidden.
    return keyword, error.message if shown == instance else short(shown)


def _node_errcode(node: Any, keyword: str) -> str | None:
    if not isinstance(node, dict) or "x-errcode" not in node:
        return None
    declared = node["x-errcode"]
    if isinstance(declared, str):
        return declared
    if isinstance(declared, dict):
        found = declared.get(keyword, declared.get("*"))
        return str(found) if found is not None else None
    return None


def _schema_nodes(root: Any, schema_path: Iterable[Any]) -> list[Any]:
    """The schema nodes from the root down to the one a keyword failed in (the keyword itself excluded)."""
    nodes = [root]
    node = root
    parts = list(schema_path)[:-1]
    for part in parts:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        nodes.append(node)
    return nodes


def _errcode_and_acceptance(root: Any, error: ValidationError) -> tuple[str | None, bool]:
    """The `x-errcode` the nearest annotated schema node gives this error, and whether a node on the way
    says the real server accepts the value anyway (`x-accepted-by-server`) or checks it itself, in its own
    order (`x-checked-by-server`): either way the request is served."""
    nodes = _schema_nodes(root, error.absolute_schema_path)
    keyword = str(error.validator)
    missing = _missing_property(error)
    errcode: str | None = None
    if missing is not None:
        owner = next((node for node in reversed(nodes) if isinstance(node, dict)), {})
        errcode = _node_errcode(owner.get("properties", {}).get(missing), "required")
    # Walk only through schema nodes (dicts); list nodes (allOf/oneOf lists) carry no annotations.
    for node in reversed(nodes):
        if errcode is not None:
            break
        errcode = _node_errcode(node, keyword)
    # `x-checked-by-server`: the server checks the constraint itself, in its own order among checks the schema
    # cannot see (state, or effects that come first); the violation stands, and the server's check answers.
    accepted = any(
        isinstance(node, dict)
        and (node.get("x-accepted-by-server") is True or node.get("x-checked-by-server") is True)
        for node in nodes
    )
    return errcode, accepted


def schema_violations(
    validator: SchemaCheck,
    root_schema: Any,
    instance: Any,
    *,
    side: Side,
    operation: str | None,
    location: str,
    pointer_prefix: str = "",
) -> list[Violation]:
    """Every way `instance` breaks the schema, as violations (discriminated unions narrowed to the branch
    the instance claims to be)."""
    found: list[Violation] = []
    seen: set[tuple[str, str, str]] = set()
    for top in validator.iter_errors(instance):
        for error in _narrow(top):
            # Under a secret name the value is not shown at all; elsewhere it is shown with its secrets
            # masked (an object holding a password, a body sent as one string).
            secret = is_secret_path(error.absolute_path)
            shown = redact_quoted(error.instance)
            expected, actual = _describe(error, shown)
            errcode, accepted = _errcode_and_acceptance(root_schema, error)
            pointer = pointer_prefix + json_pointer(error.absolute_path)
            missing = _missing_property(error)
            if missing is not None:
                pointer += json_pointer([missing])
            # OAS 3.0 `type` reports a null twice (not nullable, wrong type): one violation is enough.
            if (pointer, str(error.validator), expected) in seen:
                continue
            seen.add((pointer, str(error.validator), expected))
            if secret:
                actual = f"{json_type(error.instance)} (redacted)"
            found.append(
                Violation(
                    side=side,
                    operation=operation,
                    location=location,
                    pointer=pointer,
                    keyword=str(error.validator),
                    expected=expected,
                    actual=actual,
                    errcode=errcode,
                    accepted=accepted,
                    value=shown if missing is None and not secret else None,
                )
            )
    return found
