"""What the control API does, as plain functions over a `World` (the HTTP handlers and the Python API of
the pytest plugin both call these)."""

from __future__ import annotations

from typing import Any

from contracts.core import ContractValidator, validator_for
from mockgen.faults import Fault
from mockgen.store.errors import ControlError
from mockgen.world import World

SERVICES = ("letta", "matrix")
FAULT_KEYS = frozenset(
    {"operation", "path", "method", "service", "status", "body", "headers", "times", "after", "latency_ms",
     "drop_connection", "rate_limit"}
)  # fmt: skip


def _service_of(operation_id: str) -> tuple[str, ContractValidator]:
    for service in SERVICES:
        validator = validator_for(service)
        if operation_id in validator.operations:
            return service, validator
    raise ControlError(400, f"operation {operation_id!r} is in neither the Letta nor the Matrix spec")


def install_fault(world: World, spec: dict[str, Any]) -> Fault:
    """Check a fault against the contract and install it.

    The status must be one the operation documents and the body (when given) must match that status's
    schema, so an injected fault is always something the real service could answer."""
    unknown = set(spec) - FAULT_KEYS
    if unknown:
        raise ControlError(400, f"unknown fault fields: {', '.join(sorted(unknown))}")
    operation_id = spec.get("operation")
    if operation_id is None and spec.get("path") is None:
        raise ControlError(400, "a fault needs an operation or a path")
    rate_limit = spec.get("rate_limit")
    status = spec.get("status")
    if rate_limit is not None:
        if status not in (None, 429):
            raise ControlError(400, "rate_limit answers 429; do not give another status")
        status = 429
    drop = bool(spec.get("drop_connection", False))
    latency = int(spec.get("latency_ms", 0))
    if status is None and not drop and not latency:
        raise ControlError(400, "a fault needs a status, rate_limit, drop_connection or latency_ms")
    service = spec.get("service")
    if operation_id is not None:
        owner, validator = _service_of(str(operation_id))
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
    return world.faults.add(
        operation=operation_id,
        path=spec.get("path"),
        method=spec.get("method"),
        service=service,
        status=None if status is None else int(status),
        body=spec.get("body"),
        has_body="body" in spec,
        headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
        times=int(spec.get("times", 1)),
        after=int(spec.get("after", 0)),
        latency_ms=latency,
        drop_connection=drop,
        retry_after_ms=None if rate_limit is None else int(rate_limit.get("retry_after_ms", 1000)),
    )


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
    if agent_id not in world.letta.agents:
        raise ControlError(404, f"no agent {agent_id}")
    agent = world.letta.modify(agent_id, {"name": name})
    return {"id": agent.id, "name": agent.name}


def remove_agent(world: World, agent_id: str) -> dict[str, str]:
    if agent_id not in world.letta.agents:
        raise ControlError(404, f"no agent {agent_id}")
    agent = world.letta.delete(agent_id)
    return {"id": agent.id, "name": agent.name}


def add_agent(world: World, spec: dict[str, Any]) -> dict[str, str]:
    added = world.apply_seed({"agents": [spec]})["agents"][0]
    return {"id": added["id"], "name": added["name"]}
