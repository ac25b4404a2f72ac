"""What the control API does, as plain functions over a `World` (the HTTP handlers and the Python API of
the pytest plugin both call these)."""

from __future__ import annotations

import itertools
import re
from typing import Any

from contracts.coverage import service_of
from contracts.validation import Operation, fill_template, validator_for
from mockgen.faults import Fault
from mockgen.store.errors import ControlError, LettaError
from mockgen.store.letta_turns import Script, ScriptError
from mockgen.world import World

SERVICES = ("letta", "matrix")
FAULT_KEYS = frozenset(
    {"operation", "path", "method", "service", "status", "body", "headers", "times", "after", "latency_ms",
     "drop_connection", "rate_limit", "stream"}
)  # fmt: skip
STREAM_FAULT_KEYS = frozenset({"cut_after", "stall_after", "stall_ms", "error", "omit_done"})
STREAMING_OPERATIONS = ("streamAgentMessage",)
# The mock frames every answer itself: a fault may not change its length, type or encoding.
FRAMING_HEADERS = frozenset({"content-length", "content-type", "transfer-encoding"})
# RFC 9110 field names (tokens); values: visible latin-1, spaces and tabs (no CR, LF or other controls).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _compiled(path: Any) -> re.Pattern[str]:
    try:
        return re.compile(str(path))
    except re.error as exc:
        raise ControlError(400, f"fault path {path!r} is not a regular expression: {exc}") from None


def _checked_headers(headers: dict[str, Any]) -> dict[str, str]:
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ControlError(400, f"fault header name {name!r} is not an HTTP field name")
        if name.lower() in FRAMING_HEADERS:
            raise ControlError(400, f"fault header {name} is the mock's to set")
        if not _HEADER_VALUE.fullmatch(str(value)):
            raise ControlError(
                400, f"fault header {name} value must be latin-1 text without CR, LF or control characters"
            )
    return {name: str(value) for name, value in headers.items()}


def _sample_paths(operation: Operation) -> list[str]:
    """The operation's path template, and the template with its enumerated parameters (e.g. the Matrix
    `{version}`) filled in every way: what a fault's path expression is tried against."""
    # Each enumerated parameter takes each of its values or stays as the template has it (None).
    choices = {
        name: [*map(str, param.schema.get("enum", [])), None]
        for (location, name), param in operation.params.items()
        if location == "path"
    }
    return [
        _filled(
            operation.path,
            {name: value for name, value in zip(choices, chosen, strict=True) if value is not None},
        )
        for chosen in itertools.product(*choices.values())
    ]


def _filled(template: str, values: dict[str, str]) -> str:
    return fill_template(template, lambda name: values.get(name, f"{{{name}}}"))


def _operations_for_path(pattern: re.Pattern[str], services: tuple[str, ...], method: Any) -> list[Operation]:
    """The operations a path fault can hit: those whose path it matches, or, when it matches no template
    (e.g. it names a concrete room id), every operation of the services."""
    operations = [
        operation
        for service in services
        for operation in validator_for(service).operations.values()
        if method is None or operation.method == str(method).upper()
    ]
    matched = [op for op in operations if any(pattern.search(path) for path in _sample_paths(op))]
    return matched or operations


def install_fault(world: World, spec: dict[str, Any]) -> Fault:
    """Check a fault against the contract and install it.

    The status must be one the operation documents (for a path fault: one an operation the path can match
    documents) and the body (when given) must match that status's schema, so an injected fault is always
    something the real service could answer."""
    unknown = set(spec) - FAULT_KEYS
    if unknown:
        raise ControlError(400, f"unknown fault fields: {', '.join(sorted(unknown))}")
    operation_id = spec.get("operation")
    if operation_id is None and spec.get("path") is None:
        raise ControlError(400, "a fault needs an operation or a path")
    pattern = _compiled(spec["path"]) if spec.get("path") is not None else None
    rate_limit = spec.get("rate_limit")
    status = spec.get("status")
    if rate_limit is not None:
        if status not in (None, 429):
            raise ControlError(400, "rate_limit answers 429; do not give another status")
        status = 429
    drop = bool(spec.get("drop_connection", False))
    latency = int(spec.get("latency_ms", 0))
    stream = _checked_stream(spec.get("stream"), operation_id, status)
    if status is None and not drop and not latency and not stream:
        raise ControlError(400, "a fault needs a status, rate_limit, drop_connection, latency_ms or stream")
    if status is None and ("body" in spec or spec.get("headers")):
        raise ControlError(400, "body and headers need a status (a fault without one answers nothing)")
    headers = _checked_headers(spec.get("headers") or {})
    service = spec.get("service")
    if operation_id is not None:
        try:
            owner = service_of(str(operation_id), SERVICES)
        except KeyError:
            raise ControlError(
                400, f"operation {operation_id!r} is in neither the Letta nor the Matrix spec"
            ) from None
        validator = validator_for(owner)
        if service is not None and service != owner:
            raise ControlError(400, f"operation {operation_id} belongs to {owner}, not {service}")
        service = owner
        operation = validator.operations[str(operation_id)]
        if status is not None:
            documented = operation.response(int(status))
            if documented is None:
                raise ControlError(
                    400,
                    f"status {status} is not documented for {operation_id} "
                    f"(documented: {', '.join(map(str, operation.documented_statuses))})",
                )
            if "body" in spec:
                problems = validator.check_body(operation, int(status), spec["body"])
                if problems:
                    raise ControlError(
                        400, "fault body breaks the contract: " + "; ".join(p.message for p in problems)
                    )
            elif not documented.examples and documented.media_types:
                raise ControlError(400, f"{operation_id} {status} has no example to answer with; give a body")
    elif status is not None and pattern is not None:
        services = (str(service),) if service is not None else SERVICES
        candidates = _operations_for_path(pattern, services, spec.get("method"))
        if not any(op.response(int(status)) is not None for op in candidates):
            raise ControlError(
                400,
                f"status {status} is not documented for any operation path {spec['path']!r} can match "
                f"({', '.join(sorted(op.operation_id for op in candidates)) or 'none'})",
            )
    return world.faults.add(
        operation=operation_id,
        path=spec.get("path"),
        method=spec.get("method"),
        service=service,
        status=None if status is None else int(status),
        body=spec.get("body"),
        has_body="body" in spec,
        headers=headers,
        times=int(spec.get("times", 1)),
        after=int(spec.get("after", 0)),
        latency_ms=latency,
        drop_connection=drop,
        retry_after_ms=None if rate_limit is None else int(rate_limit.get("retry_after_ms", 1000)),
        stream=stream,
    )


def _checked_stream(stream: Any, operation_id: Any, status: Any) -> dict[str, Any] | None:
    """A stream fault's settings: only for an operation that streams, and not with a status of its own."""
    if stream is None:
        return None
    if not isinstance(stream, dict) or set(stream) - STREAM_FAULT_KEYS or not stream:
        raise ControlError(400, f"stream takes {', '.join(sorted(STREAM_FAULT_KEYS))}")
    if operation_id not in STREAMING_OPERATIONS or status is not None:
        raise ControlError(
            400, f"a stream fault needs operation {' or '.join(STREAMING_OPERATIONS)} and no status"
        )
    return dict(stream)


def journal_page(
    world: World, since: int = 0, service: str | None = None, operation: str | None = None
) -> dict[str, Any]:
    entries = world.journal.entries(since=since, service=service, operation=operation)
    return {
        "entries": [entry.to_json() for entry in entries],
        "last_seq": world.journal.last_seq,
        "dropped": world.journal.dropped,
    }


def rename_agent(world: World, agent_id: str, name: str) -> dict[str, str]:
    # The store checks and changes under one lock; a malformed id names no agent either.
    try:
        agent = world.letta.modify(agent_id, {"name": name})
    except LettaError:
        raise ControlError(404, f"no agent {agent_id}") from None
    return {"id": agent["id"], "name": agent["name"]}


def remove_agent(world: World, agent_id: str) -> dict[str, str]:
    try:
        agent = world.letta.delete(agent_id)
    except LettaError:
        raise ControlError(404, f"no agent {agent_id}") from None
    return {"id": agent.id, "name": agent.name}


def script_turns(world: World, agent_id: str, turns: list[dict[str, Any]]) -> dict[str, int]:
    """Queue an agent's next turns (see specs/mock-control.yaml `TurnScript`)."""
    try:
        scripts = [Script.parse(turn) for turn in turns]
    except ScriptError as exc:
        raise ControlError(400, str(exc)) from None
    try:
        return {"queued": world.letta.script(agent_id, scripts)}
    except LettaError:
        raise ControlError(404, f"no agent {agent_id}") from None


def add_agent(world: World, spec: dict[str, Any]) -> dict[str, str]:
    added = world.apply_seed({"agents": [spec]})["agents"][0]
    return {"id": added["id"], "name": added["name"]}
