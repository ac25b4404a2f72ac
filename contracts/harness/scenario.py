"""Scenarios: named request steps run against a server (mock or real), every exchange checked against the
contract, every outcome recorded so two runs (mock and Synapse) can be compared step by step.

A step's path and body may hold `{name}` placeholders, filled from the run's variables: the unique prefix
of the run, and values saved from earlier answers (`save={"room": "room_id"}`). A step names the token it
sends (a variable) or none."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from contracts.adapters.aiohttp_hook import ContractMiddleware
from contracts.harness.projection import project
from contracts.harness.sse import Event, FramingError, parse_events
from contracts.validation import ContractValidator, Violation

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_USER_ID = re.compile(r"^@[^:]+:.+$")


@dataclass(frozen=True)
class Step:
    name: str
    service: str  # letta | matrix
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None  # a body sent as is (malformed JSON and the like)
    token: str | None = None  # the variable holding the bearer token to send
    headers: Mapping[str, str] = field(default_factory=dict)  # sent as given, after token and Content-Type
    params: Mapping[str, str] = field(default_factory=dict)
    save: Mapping[str, str] = field(default_factory=dict)  # variable -> top-level field of the answer
    expect: int | None = (
        None  # the status the scenario expects (real servers decide; mismatches are reported)
    )
    follow_redirects: bool = True
    needs: tuple[str, ...] = ()  # variables without which the step is skipped (e.g. admin credentials)
    # what a differential compares of the answer besides status and errcode (see `projection`)
    compare: tuple[str, ...] = ()


@dataclass
class Outcome:
    step: Step
    status: int | None
    errcode: str | None
    keys: tuple[str, ...]
    body: Any
    operation: str | None
    violations: list[Violation]
    skipped: str | None = None
    projections: tuple[tuple[str, Any], ...] = ()  # the step's `compare` selectors and what they picked
    content_type: str | None = None
    events: list[Event] | None = None  # a text/event-stream answer's events
    framing: str | None = None  # why a text/event-stream answer could not be read as events

    @property
    def unexpected(self) -> bool:
        return self.step.expect is not None and self.status is not None and self.status != self.step.expect


def _fill(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [_fill(item, variables) for item in value]
    if isinstance(value, dict):
        return {_fill(key, variables): _fill(item, variables) for key, item in value.items()}
    return value


def _quote_ids(path: str) -> str:
    """Percent-encode the sigils Matrix ids carry in paths (what careful clients send)."""
    return path.replace("#", "%23").replace("!", "%21")


def new_prefix() -> str:
    return f"cc{uuid.uuid4().hex[:10]}"


async def run_scenario(
    steps: Sequence[Step],
    bases: Mapping[str, str],
    variables: Mapping[str, str],
    *,
    request_timeout: float = 30.0,
    validators: Mapping[str, ContractValidator] | None = None,
) -> list[Outcome]:
    """Run every step in order against `bases` ({service: base URL}); exchanges are checked by the
    validator core through the aiohttp hook (against `validators[service]` when given, else our specs)."""
    known = dict(variables)
    specs = validators or {}
    hook = ContractMiddleware({base: specs.get(service, service) for service, base in bases.items()})
    outcomes: list[Outcome] = []
    # A connection per step: after an exception's 500 Letta's uvicorn closes the connection without a
    # `Connection: close`, and the next step, sent on it, would be reset.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        middlewares=(hook,),
        timeout=aiohttp.ClientTimeout(total=request_timeout),
    ) as session:
        for step in steps:
            missing = [name for name in step.needs if not known.get(name)]
            if missing or step.service not in bases:
                reason = f"needs {', '.join(missing)}" if missing else f"no {step.service} server given"
                outcomes.append(Outcome(step, None, None, (), None, None, [], skipped=reason))
                continue
            before = len(hook.checked)
            headers: dict[str, str] = {}
            if step.token is not None and known.get(step.token):
                headers["Authorization"] = f"Bearer {known[step.token]}"
            data: bytes | None = step.raw
            if step.body is not None:
                data = json.dumps(_fill(step.body, known)).encode()
                headers["Content-Type"] = "application/json"
            headers.update(_fill(dict(step.headers), known))
            url = bases[step.service].rstrip("/") + _quote_ids(_fill(step.path, known))
            async with session.request(
                step.method, url, data=data, headers=headers, params=_fill(dict(step.params), known),
                allow_redirects=step.follow_redirects,
            ) as response:  # fmt: skip
                raw = await response.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            events, framing = None, None
            if response.content_type == "text/event-stream":
                try:
                    events = parse_events(raw.decode("utf-8", "replace"))
                except FramingError as exc:
                    framing = str(exc)
            checked = hook.checked[before:]
            for name, key in step.save.items():
                if isinstance(body, dict) and key in body:
                    known[name] = str(body[key])
            if (
                "server_name" not in known
                and isinstance(body, dict)
                and _USER_ID.match(str(body.get("user_id", "")))
            ):
                # A Matrix user id names its server: later steps build ids from it.
                known["server_name"] = str(body["user_id"]).split(":", 1)[1]
            outcomes.append(
                Outcome(
                    step=step,
                    status=response.status,
                    errcode=body.get("errcode") if isinstance(body, dict) else None,
                    keys=tuple(sorted(body)) if isinstance(body, dict) else (),
                    body=body,
                    operation=checked[-1].operation if checked else None,
                    violations=[v for c in checked for v in c.violations],
                    projections=project(body, step.compare, known),
                    content_type=response.headers.get("Content-Type"),
                    events=events,
                    framing=framing,
                )
            )
    return outcomes
