"""The validator core: (request, response) exchanges checked against one of our OpenAPI documents.

Built on openapi-core: it checks the document (openapi-spec-validator) and its OpenAPI 3.0 schema-validator
factories build one jsonschema validator per schema (OAS 3.0 dialect: `nullable`, OpenAPI formats, read/write
rules). openapi-core's own per-request entry points rebuild those validators and re-walk the document on every
call (about 5 ms a request here), so this module builds them once per document and keeps them: matching a
route, casting parameters and turning jsonschema errors into `Violation`s is the thin part done per call.

Every adapter (the mock's middleware, the aiohttp client hook, the recorded-exchange checker, the live
checker) goes through `ContractValidator`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote

import jsonschema_rs
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema_path import SchemaPath
from openapi_core import OpenAPI
from openapi_core.configurations import Config
from openapi_core.util import BOOLEAN_FALSE_VALUES, BOOLEAN_TRUE_VALUES
from openapi_core.validation.schemas import (
    oas30_read_schema_validators_factory,
    oas30_write_schema_validators_factory,
)

from contracts.oas import to_json_schema, uses_keyword
from contracts.redaction import SECRET_KEYS, TOKEN_KEYS
from contracts.specs import SPEC_FILES, Spec, load_resolved

Side = Literal["request", "response"]
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
JSON_MEDIA_TYPE = "application/json"
_SHORT = 80
# Values never repeated in a violation (they end up in logs and journals).
SECRET_FIELDS = SECRET_KEYS | TOKEN_KEYS


def _short(value: Any) -> str:
    """A compact, bounded rendering of a JSON value for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def json_pointer(path: Iterable[Any]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every call (json.loads with options builds a new one each time).
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8 only and no NaN/Infinity (what Synapse and FastAPI accept). Every failure is a
    ValueError, nesting too deep for the decoder included."""
    try:
        return _STRICT_JSON.decode(body.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


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
    actual = _json_type(value)
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


def _describe(error: ValidationError) -> tuple[str, str]:
    """(expected, actual) for a jsonschema error, in words."""
    keyword, value, instance = (
        str(error.validator),
        cast(Any, error.validator_value),
        cast(Any, error.instance),
    )
    if keyword == "type":
        return f"type {value}", "null" if instance is None else f"{_json_type(instance)} {_short(instance)}"
    if keyword == "required":
        return f"property '{_missing_property(error)}'", "nothing (missing)"
    if keyword in ("enum", "const"):
        options = value if keyword == "enum" else [value]
        return "one of " + ", ".join(_short(v) for v in options), _short(instance)
    if keyword == "pattern":
        return f"a string matching /{value}/", _short(instance)
    if keyword in ("maxLength", "minLength"):
        bound = "at most" if keyword == "maxLength" else "at least"
        return f"{bound} {value} characters", f"{len(instance)} characters"
    if keyword in ("maxItems", "minItems"):
        bound = "at most" if keyword == "maxItems" else "at least"
        return f"{bound} {value} items", f"{len(instance)} items"
    if keyword in ("maximum", "minimum"):
        return f"a number {'<=' if keyword == 'maximum' else '>='} {value}", _short(instance)
    if keyword == "additionalProperties":
        return "no undocumented properties", error.message
    if keyword == "format":
        return f"format '{value}'", _short(instance)
    if keyword == "oneOf":
        if "is valid under each of" in error.message:
            return "exactly one matching alternative", "a value matching several"
        return f"one of {len(value)} alternatives", _short(instance)
    if keyword == "anyOf":
        return f"any of {len(value)} alternatives", _short(instance)
    return keyword, error.message


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
    says the real server accepts the value anyway (`x-accepted-by-server`)."""
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
    accepted = any(isinstance(node, dict) and node.get("x-accepted-by-server") is True for node in nodes)
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
            expected, actual = _describe(error)
            errcode, accepted = _errcode_and_acceptance(root_schema, error)
            pointer = pointer_prefix + json_pointer(error.absolute_path)
            missing = _missing_property(error)
            if missing is not None:
                pointer += json_pointer([missing])
            # OAS 3.0 `type` reports a null twice (not nullable, wrong type): one violation is enough.
            if (pointer, str(error.validator), expected) in seen:
                continue
            seen.add((pointer, str(error.validator), expected))
            secret = bool(error.absolute_path) and str(error.absolute_path[-1]) in SECRET_FIELDS
            if secret:
                actual = f"{_json_type(error.instance)} (redacted)"
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
                    value=error.instance if missing is None and not secret else None,
                )
            )
    return found


class SchemaCheck:
    """openapi-core's validator for one schema behind a compiled fast path. Most instances are valid, and
    jsonschema-rs confirms that in microseconds; only an instance it refuses is walked by openapi-core,
    whose errors make the messages. The fast path only ever answers "valid", never invents an error, and
    exists only for schemas whose JSON Schema reading is exactly OpenAPI 3.0's (no `format`, `$ref`,
    `discriminator`, `readOnly` or `writeOnly`); a property test holds the two to agreement."""

    __slots__ = ("fast", "slow")

    def __init__(self, slow: Validator, fast: jsonschema_rs.Validator | None) -> None:
        self.slow = slow
        self.fast = fast

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.fast is not None and self.fast.is_valid(instance):
            return iter(())
        return self.slow.iter_errors(instance)


_NO_FAST_PATH = frozenset({"format", "$ref", "discriminator", "readOnly", "writeOnly"})


def fast_validator(schema: Any, *, side: Side) -> jsonschema_rs.Validator | None:
    """jsonschema-rs for a schema that reads the same as JSON Schema draft 4 (see `SchemaCheck`)."""
    if not isinstance(schema, dict) or uses_keyword(schema, _NO_FAST_PATH):
        return None
    return jsonschema_rs.Draft4Validator(to_json_schema(schema, side=side))


def first_error(validator: SchemaCheck, instance: Any) -> ValidationError | None:
    found: ValidationError | None = best_match(validator.iter_errors(instance))
    return found


# --- the compiled document ------------------------------------------------------------------------------


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
    body_present: bool = False
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


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
        pattern += re.escape(literal)
        if name:
            pattern += f"(?P<{name}>[^/]+)"
    return re.compile(f"^{pattern}$")


def _literal_weight(template: str) -> tuple[int, int]:
    return (-len(re.sub(r"\{[^}]+\}", "", template)), template.count("{"))


class ContractValidator:
    """One OpenAPI document, compiled for checking exchanges. Build it once (see `validator_for`)."""

    def __init__(self, spec: Spec, *, name: str = "api", check_spec: bool = True) -> None:
        self.name = name
        self.spec = spec
        # openapi-core checks the document (openapi-spec-validator, ~0.25 s a document) and gives us its
        # SchemaPath. The project's own documents are checked by the test suite, so they may skip it.
        # openapi-core documents `spec_validator_cls=None` as "skip the check" (its type hint omits None).
        config = Config() if check_spec else Config(spec_validator_cls=None)  # type: ignore[arg-type]
        self.openapi = OpenAPI.from_dict(spec, config=config)
        self.operations: dict[str, Operation] = {}
        self._by_template: dict[str, dict[str, Operation]] = {}
        paths: Mapping[str, Any] = spec.get("paths", {})
        for template, item in paths.items():
            for method in HTTP_METHODS:
                if method in item:
                    operation = self._compile(template, method, item)
                    if operation.operation_id in self.operations:
                        raise ValueError(f"{name}: operationId {operation.operation_id!r} is not unique")
                    self.operations[operation.operation_id] = operation
                    self._by_template.setdefault(template, {})[operation.method] = operation
        self._routes = sorted(
            ((template, _template_regex(template)) for template in self._by_template),
            key=lambda route: _literal_weight(route[0]),
        )

    # -- building

    def _schema_path(self, *parts: str | int) -> SchemaPath:
        node: SchemaPath = self.openapi.spec
        for part in parts:
            node = node / part
        return node

    def _validator(self, parts: Sequence[str | int], *, side: Side) -> SchemaCheck:
        factory = (
            oas30_write_schema_validators_factory
            if side == "request"
            else oas30_read_schema_validators_factory
        )
        schema_validator = factory.create(self.openapi.spec, self._schema_path(*parts))
        raw: Any = self.spec
        for part in parts:
            raw = raw[part]
        return SchemaCheck(schema_validator.validator, fast_validator(raw, side=side))

    def _compile(self, template: str, method: str, item: Mapping[str, Any]) -> Operation:
        definition: Mapping[str, Any] = item[method]
        base = ("paths", template, method)
        operation_id = str(definition.get("operationId") or f"{method.upper()} {template}")
        params: dict[tuple[str, str], Param] = {}
        for origin, param_list in (
            ("path-item", item.get("parameters", [])),
            ("operation", definition.get("parameters", [])),
        ):
            for index, raw in enumerate(param_list):
                parts: tuple[str | int, ...] = (
                    ("paths", template, "parameters", index)
                    if origin == "path-item"
                    else (*base, "parameters", index)
                )
                schema: Mapping[str, Any] = raw.get("schema", {})
                is_array = schema.get("type") == "array"
                items = schema.get("items", {}) if is_array else {}
                params[(raw["in"], raw["name"])] = Param(
                    name=raw["name"],
                    location=raw["in"],
                    required=bool(raw.get("required", raw["in"] == "path")),
                    schema=schema,
                    validator=self._validator((*parts, "schema"), side="request"),
                    is_array=is_array,
                    item_type=items.get("type") if is_array else None,
                    scalar_type=None if is_array else schema.get("type"),
                    explode=bool(raw.get("explode", raw.get("style", "form") == "form")),
                    unrouted=bool(raw.get("x-unrouted", False)),
                    example=raw.get("example", schema.get("example")),
                )
        body: Body | None = None
        if "requestBody" in definition:
            request_body = definition["requestBody"]
            body = Body(
                required=bool(request_body.get("required", False)),
                media_types={
                    media: (
                        content.get("schema", {}),
                        self._validator((*base, "requestBody", "content", media, "schema"), side="request"),
                    )
                    for media, content in request_body.get("content", {}).items()
                },
            )
        responses: dict[str, ResponseSpec] = {}
        for status, response in definition.get("responses", {}).items():
            rbase = (*base, "responses", str(status))
            media_types: dict[str, tuple[Mapping[str, Any], SchemaCheck]] = {}
            variants: list[Variant] = []
            examples: list[tuple[str, Any]] = []
            for media, content in response.get("content", {}).items():
                schema = content.get("schema", {})
                media_types[media] = (
                    schema,
                    self._validator((*rbase, "content", media, "schema"), side="response"),
                )
                for index, branch in enumerate(schema.get("oneOf", [])):
                    variants.append(
                        Variant(
                            title=str(branch.get("title") or f"variant {index + 1}"),
                            validator=self._validator(
                                (*rbase, "content", media, "schema", "oneOf", index), side="response"
                            ),
                        )
                    )
                if "example" in content:
                    examples.append(("example", content["example"]))
                examples.extend((name, ex.get("value")) for name, ex in content.get("examples", {}).items())
            headers = {
                header_name.lower(): (
                    bool(header.get("required", False)),
                    header.get("schema", {}),
                    self._validator((*rbase, "headers", header_name, "schema"), side="response"),
                )
                for header_name, header in response.get("headers", {}).items()
            }
            responses[str(status)] = ResponseSpec(
                status=str(status),
                description=str(response.get("description", "")),
                media_types=media_types,
                headers=headers,
                variants=variants,
                examples=examples,
            )
        security = definition.get("security", self.spec.get("security", []))
        return Operation(
            operation_id=operation_id,
            method=method.upper(),
            path=template,
            params=params,
            body=body,
            responses=responses,
            security=security,
            definition=definition,
        )

    # -- routing

    def find(self, method: str, raw_path: str) -> RouteMatch | NoRoute:
        """The operation for a request path (percent-encoded or not); path parameters come back decoded."""
        path = raw_path.split("?", 1)[0]
        allowed: list[str] = []
        for template, regex in self._routes:
            matched = regex.match(path)
            if matched is None:
                continue
            by_method = self._by_template[template]
            operation = by_method.get(method.upper())
            if operation is None:
                allowed.extend(by_method)
                continue
            return RouteMatch(operation, {k: unquote(v) for k, v in matched.groupdict().items()})
        return NoRoute("method", tuple(sorted(set(allowed)))) if allowed else NoRoute("path")

    # -- requests

    def _cast(self, param: Param, raw: str) -> tuple[Any, Violation | None]:
        kind = param.item_type if param.is_array else param.scalar_type
        try:
            if kind == "integer":
                if not re.fullmatch(r"[+-]?\d+", raw.strip()):
                    raise ValueError(raw)
                return int(raw), None
            if kind == "number":
                return float(raw), None
            if kind == "boolean":
                lowered = raw.lower()
                if lowered in BOOLEAN_TRUE_VALUES:
                    return True, None
                if lowered in BOOLEAN_FALSE_VALUES:
                    return False, None
                raise ValueError(raw)
        except ValueError:
            return raw, Violation(
                side="request",
                operation=None,
                location=param.where,
                pointer="",
                keyword="type",
                expected=f"type {kind}",
                actual=f"string {_short(raw)}",
                value=raw,
            )
        return raw, None

    def _check_param(
        self, operation: Operation, param: Param, raw_values: list[str] | None
    ) -> tuple[Any, list[Violation]]:
        op_id = operation.operation_id
        if not raw_values:
            if param.required:
                return None, [
                    Violation("request", op_id, param.where, "", "required", "a value", "nothing (missing)")
                ]
            return None, []
        if param.is_array:
            values = raw_values if param.explode else [v for raw in raw_values for v in raw.split(",")]
        else:
            values = [raw_values[0]]
        cast: list[Any] = []
        for raw in values:
            value, problem = self._cast(param, raw)
            if problem is not None:
                return raw, [
                    Violation(
                        "request",
                        op_id,
                        problem.location,
                        "",
                        problem.keyword,
                        problem.expected,
                        problem.actual,
                        value=raw,
                    )
                ]
            cast.append(value)
        typed: Any = cast if param.is_array else cast[0]
        found = schema_violations(
            param.validator, param.schema, typed, side="request", operation=op_id, location=param.where
        )
        return typed, found

    def check_request(
        self,
        operation: Operation,
        *,
        path_params: Mapping[str, str],
        query: str | Mapping[str, list[str]] = "",
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> RequestCheck:
        """Check one request against its operation. `headers` keys must be lower case."""
        result = RequestCheck()
        query_values = parse_qs(query, keep_blank_values=True) if isinstance(query, str) else query
        header_values = headers or {}
        for (location, name), param in operation.params.items():
            if location == "path":
                raw = path_params.get(name)
                typed, found = self._check_param(operation, param, [raw] if raw is not None else None)
                if found and param.unrouted:
                    result.unrouted = True
                result.violations.extend(
                    found if param.unrouted else [replace(v, accepted=True) for v in found]
                )
                result.path[name] = typed
            elif location == "query":
                typed, found = self._check_param(operation, param, query_values.get(name))
                result.violations.extend(found)
                if typed is not None:
                    result.query[name] = typed
            elif location == "header":
                value = header_values.get(name.lower())
                typed, found = self._check_param(operation, param, [value] if value is not None else None)
                result.violations.extend(found)
        if operation.body is not None:
            self._check_body(operation, body, content_type, result)
        elif body:
            result.body_present = True
        return result

    def _check_body(
        self, operation: Operation, body: bytes | None, content_type: str | None, result: RequestCheck
    ) -> None:
        assert operation.body is not None
        op_id = operation.operation_id
        if not body:
            if operation.body.required:
                result.violations.append(
                    Violation(
                        "request", op_id, "request body", "", "not-json", "a JSON body", "an empty body"
                    )
                )
            return
        result.body_present = True
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media not in operation.body.media_types:
            result.violations.append(
                Violation(
                    "request",
                    op_id,
                    "request content type",
                    "",
                    "content-type",
                    " or ".join(operation.body.media_types),
                    media or "no Content-Type",
                    accepted=True,
                )
            )
        schema, validator = primary_media(operation.body.media_types)
        try:
            result.body = parse_json(body)
        except ValueError as exc:
            result.violations.append(
                Violation(
                    "request", op_id, "request body", "", "not-json", "a JSON document", _short(str(exc))
                )
            )
            return
        result.violations.extend(
            schema_violations(
                validator, schema, result.body, side="request", operation=op_id, location="request body"
            )
        )

    # -- responses

    def check_response(
        self,
        operation: Operation,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[list[Violation], str | None]:
        """Check one response; returns the violations and, for a union response body, the variant it is."""
        op_id = operation.operation_id
        spec = operation.response(status)
        if spec is None:
            return [
                Violation(
                    "response",
                    op_id,
                    "response status",
                    "",
                    "status",
                    "one of " + ", ".join(str(s) for s in operation.documented_statuses),
                    str(status),
                )
            ], None
        found: list[Violation] = []
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        for name, (required, schema, validator) in spec.headers.items():
            if name not in lowered:
                if required:
                    found.append(
                        Violation(
                            "response",
                            op_id,
                            f"response header '{name}'",
                            "",
                            "required",
                            "a value",
                            "nothing",
                        )
                    )
                continue
            raw = lowered[name]
            value: Any = raw
            if schema.get("type") == "integer" and re.fullmatch(r"[+-]?\d+", raw.strip()):
                value = int(raw)
            found.extend(
                schema_violations(
                    validator,
                    schema,
                    value,
                    side="response",
                    operation=op_id,
                    location=f"response header '{name}'",
                )
            )
        if not spec.media_types:
            return found, None
        if not body:
            found.append(
                Violation("response", op_id, "response body", "", "not-json", "a JSON body", "an empty body")
            )
            return found, None
        media = lowered.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in spec.media_types:
            found.append(
                Violation(
                    "response",
                    op_id,
                    "response content type",
                    "",
                    "content-type",
                    " or ".join(spec.media_types),
                    media or "no Content-Type",
                )
            )
        schema, validator = primary_media(spec.media_types)
        try:
            document = parse_json(body)
        except ValueError as exc:
            found.append(
                Violation(
                    "response", op_id, "response body", "", "not-json", "a JSON document", _short(str(exc))
                )
            )
            return found, None
        body_violations = schema_violations(
            validator, schema, document, side="response", operation=op_id, location="response body"
        )
        found.extend(body_violations)
        variant = None
        if not body_violations and spec.variants:
            variant = next(
                (v.title for v in spec.variants if first_error(v.validator, document) is None), None
            )
        return found, variant

    def check_body(self, operation: Operation, status: int, document: Any) -> list[Violation]:
        """Check an already-parsed response body against the documented schema for `status`."""
        spec = operation.response(status)
        if spec is None or not spec.media_types:
            return self.check_response(operation, status=status)[0] if spec is None else []
        schema, validator = primary_media(spec.media_types)
        return schema_violations(
            validator,
            schema,
            document,
            side="response",
            operation=operation.operation_id,
            location="response body",
        )

    # -- whole exchanges

    def check_exchange(
        self,
        *,
        method: str,
        path: str,
        query: str = "",
        request_headers: Mapping[str, str] | None = None,
        request_body: bytes | None = None,
        status: int,
        response_headers: Mapping[str, str] | None = None,
        response_body: bytes | None = None,
    ) -> ExchangeCheck:
        """Check a recorded (request, response) pair. Header names may have any case."""
        route = self.find(method, path)
        if isinstance(route, NoRoute):
            return ExchangeCheck(None, [route.violation(method, path)])
        operation = route.operation
        lowered = {k.lower(): v for k, v in (request_headers or {}).items()}
        request = self.check_request(
            operation,
            path_params=route.path_params,
            query=query or (path.split("?", 1)[1] if "?" in path else ""),
            headers=lowered,
            body=request_body,
            content_type=lowered.get("content-type"),
        )
        response_violations, variant = self.check_response(
            operation, status=status, headers=response_headers, body=response_body
        )
        return ExchangeCheck(operation.operation_id, request.violations + response_violations, variant)

    def iter_operations(self) -> Iterator[Operation]:
        return iter(self.operations.values())


_CACHE: dict[str, ContractValidator] = {}


def validator_for(name_or_path: str) -> ContractValidator:
    """The validator for `letta`, `matrix`, `control` or a spec file path; built once per process. A file
    outside the project is checked against the OpenAPI schema on load; the project's own specs are checked
    by its test suite."""
    found = _CACHE.get(name_or_path)
    if found is None:
        found = ContractValidator(
            load_resolved(name_or_path), name=name_or_path, check_spec=name_or_path not in SPEC_FILES
        )
        _CACHE[name_or_path] = found
    return found
