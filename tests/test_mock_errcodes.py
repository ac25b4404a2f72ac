"""Every (operation, status, errcode) the Matrix spec documents, and every (operation, status) of the Letta
spec, is answered by the mock in a test: from state where the mock can get there by itself, by fault
injection where only an outage or a server policy produces it. The split is explicit, so a new errcode in
the spec cannot slip through untested."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from contracts.validation import validator_for
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.errcode_scenarios import FAULT_ONLY, FAULT_ONLY_STATUSES, NATURAL, Ctx, make_ctx
from tests.support import Answer, call

pytestmark = pytest.mark.mock_lenient  # most scenarios are bad requests on purpose

GHOST_AGENT = "agent-00000000-0000-4000-8000-000000000000"
HELLO = {"messages": [{"role": "user", "content": "hello"}]}


def _documented(service: str) -> list[tuple[str, int, str | None]]:
    found = []
    for operation in validator_for(service).iter_operations():
        for status, response in operation.responses.items():
            schema = response.media_types.get("application/json", ({}, None))[0]
            codes = schema.get("properties", {}).get("errcode", {}).get("enum") if schema else None
            for code in codes or [None]:
                found.append((operation.operation_id, int(status), code))
    return found


MATRIX_CASES = [case for case in _documented("matrix") if case[1] >= 400 or case in NATURAL]


def test_every_documented_error_is_either_natural_or_declared_fault_only() -> None:
    errors = {case for case in _documented("matrix") if case[1] >= 400}
    # From state for every operation they apply to: 401 without a token, with one never issued or with a
    # locked account's, and 404 M_UNRECOGNIZED for a version prefix other than r0 and v3.
    generic = {case for case in errors if case[1] == 401 or case[2] == "M_UNRECOGNIZED"}
    natural = {case for case in NATURAL if case[1] >= 400} | generic
    fault_only = {case for case in errors if case[1] in FAULT_ONLY_STATUSES} | FAULT_ONLY
    assert natural <= errors, f"scenarios for undocumented answers: {natural - errors}"
    assert errors - natural - fault_only == set(), "errors with neither a scenario nor a declared fault"
    assert natural & FAULT_ONLY == set()


async def _valid_request(
    c: Ctx, operation_id: str, *, authenticate: bool = True, token: str | None = None
) -> Answer:
    """A request the operation accepts (answered by an injected fault), sent as the admin, or with `token`
    instead when `authenticate` is false."""
    room = c.room
    requests: dict[str, tuple[str, str, Any, bool]] = {
        "getVersions": ("GET", f"{c.root}/_matrix/client/versions", None, False),
        "getLoginFlows": ("GET", "/login", None, False),
        "login": (
            "POST",
            "/login",
            {"type": "m.login.password", "user": "admin", "password": "admin_password"},
            False,
        ),
        "register": ("POST", "/register", {"username": "fresh", "password": "pw"}, False),
        "checkUsernameAvailability": ("GET", "/register/available?username=free", None, False),
        "getTokenOwner": ("GET", "/account/whoami", None, True),
        "getDisplayName": ("GET", "/profile/@admin:matrix.test/displayname", None, False),
        "setDisplayName": ("PUT", "/profile/@admin:matrix.test/displayname", {"displayname": "A"}, True),
        "createRoom": ("POST", "/createRoom", {}, True),
        "joinRoomById": ("POST", f"/rooms/{room}/join", {}, True),
        "joinRoom": ("POST", f"/join/{room}", {}, True),
        "inviteUser": ("POST", f"/rooms/{room}/invite", {"user_id": "@letta:matrix.test"}, True),
        "getRoomState": ("GET", f"/rooms/{room}/state", None, True),
        "getRoomStateEvent": ("GET", f"/rooms/{room}/state/m.room.create", None, True),
        "getRoomStateWithKey": ("GET", f"/rooms/{room}/state/m.room.member/@admin:matrix.test", None, True),
        "setRoomState": ("PUT", f"/rooms/{room}/state/m.room.name", {"name": "n"}, True),
        "setRoomStateWithKey": (
            "PUT",
            f"/rooms/{room}/state/m.space.child/!x",
            {"via": ["matrix.test"]},
            True,
        ),
        "getJoinedRooms": ("GET", "/joined_rooms", None, True),
        "sendMessage": (
            "PUT",
            f"/rooms/{room}/send/m.room.message/t9",
            {"msgtype": "m.text", "body": "b"},
            True,
        ),
        "leaveRoom": ("POST", f"/rooms/{room}/leave", {}, True),
        "logout": ("POST", "/logout", {}, True),
        "logout_all": ("POST", "/logout/all", {}, True),
        "setTyping": ("PUT", f"/rooms/{room}/typing/@admin:matrix.test", {"typing": True}, True),
        "postReceipt": ("POST", f"/rooms/{room}/receipt/m.read/$unknown", {}, True),
        "setReadMarker": ("POST", f"/rooms/{room}/read_markers", {}, True),
        "getJoinedMembersByRoom": ("GET", f"/rooms/{room}/joined_members", None, True),
        "sync": ("GET", "/sync", None, True),
        "getRoomEvents": ("GET", f"/rooms/{room}/messages?dir=b", None, True),
        "defineFilter": ("POST", "/user/@admin:matrix.test/filter", {"room": {}}, True),
        "getFilter": ("GET", "/user/@admin:matrix.test/filter/0", None, True),
        "adminGetUser": ("GET", f"{c.root}/_synapse/admin/v2/users/@admin:matrix.test", None, True),
        "adminPutUser": (
            "PUT",
            f"{c.root}/_synapse/admin/v2/users/@admin:matrix.test",
            {"displayname": "A"},
            True,
        ),
    }
    method, path, body, needs_token = requests[operation_id]
    url = path if path.startswith("http") else f"{c.base}{path}"
    sent = (c.admin if needs_token else None) if authenticate else token
    return await call(c.http, method, url, json_body=body, token=sent)


def _fault_body(operation_id: str, status: int, errcode: str | None) -> Any:
    operation = validator_for("matrix").operations[operation_id]
    examples = operation.responses[str(status)].examples
    body = json.loads(json.dumps(examples[0][1]))
    if errcode is not None:
        body["errcode"] = errcode
    return body


@pytest.mark.parametrize("case", MATRIX_CASES, ids=lambda case: f"{case[0]}-{case[1]}-{case[2]}")
async def test_matrix_answer(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, case: tuple[str, int, str | None]
) -> None:
    operation_id, status, errcode = case
    ctx = await make_ctx(http, matrix_mock)
    scenario = NATURAL.get(case)
    if scenario is not None:
        answer = await scenario(ctx)
    elif errcode == "M_USER_LOCKED":
        # The admin locks its own account: its token, and a login with its right password, are refused.
        admin_url = f"{ctx.root}/_synapse/admin/v2/users/@admin:matrix.test"
        locked = await call(http, "PUT", admin_url, token=ctx.admin, json_body={"locked": True})
        assert locked.status == 200, locked.body
        # An operation with optional auth checks the token only when one is sent.
        optional = validator_for("matrix").operations[operation_id].auth_optional
        answer = await _valid_request(ctx, operation_id, authenticate=not optional, token=ctx.admin)
    elif status == 401:
        token = None if errcode == "M_MISSING_TOKEN" else "syt_never_issued"
        answer = await _valid_request(ctx, operation_id, authenticate=False, token=token)
    elif errcode == "M_UNRECOGNIZED":
        ctx.base = f"{ctx.root}/_matrix/client/v2"
        answer = await _valid_request(ctx, operation_id)
    else:
        fault = matrix_mock.inject(
            operation_id, status=status, body=_fault_body(operation_id, status, errcode)
        )
        answer = await _valid_request(ctx, operation_id)
        assert fault.fired == 1
    assert (answer.status, answer.errcode) == (status, errcode), answer.body
    [entry] = [e for e in matrix_mock.journal() if e.operation == operation_id and e.status == status][-1:]
    assert [v for v in entry.violations if v.side == "response"] == []


LETTA_NATURAL: dict[tuple[str, int], Callable[[aiohttp.ClientSession, LettaMock], Awaitable[Answer]]] = {
    ("listAgentsRedirect", 307): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents", token=m.token, allow_redirects=False
    ),
    ("listAgentsRedirect", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents"),
    ("createAgentRedirect", 307): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents", token=m.token, allow_redirects=False
    ),
    ("createAgentRedirect", 401): lambda h, m: call(h, "POST", f"{m.url}/v1/agents"),
    ("listAgents", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/", token="wrong"),
    ("listAgents", 422): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents/", token=m.token, params={"limit": "x"}
    ),
    ("createAgent", 401): lambda h, m: call(h, "POST", f"{m.url}/v1/agents/", json_body={}),
    ("createAgent", 422): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/", token=m.token, json_body={"name": 1}
    ),
    ("createAgent", 500): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/", token=m.token, json_body={"name": "x"}
    ),
    ("createAgent", 400): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/", token=m.token, json_body={"name": "\ud800"}
    ),
    ("retrieveAgent", 400): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/bad-id", token=m.token),
    ("retrieveAgent", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}"),
    ("retrieveAgent", 404): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token),
    ("modifyAgent", 400): lambda h, m: call(
        h, "PATCH", f"{m.url}/v1/agents/{m.add_agents(1)[0].id}", token=m.token, json_body={"name": "\ud800"}
    ),
    ("modifyAgent", 401): lambda h, m: call(h, "PATCH", f"{m.url}/v1/agents/{GHOST_AGENT}", json_body={}),
    ("modifyAgent", 404): lambda h, m: call(
        h, "PATCH", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token, json_body={}
    ),
    ("modifyAgent", 422): lambda h, m: call(
        h, "PATCH", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token, json_body={"tags": 5}
    ),
    ("deleteAgent", 401): lambda h, m: call(h, "DELETE", f"{m.url}/v1/agents/{GHOST_AGENT}"),
    ("deleteAgent", 404): lambda h, m: call(h, "DELETE", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token),
    ("listMessages", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}/messages"),
    ("listMessages", 404): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token
    ),
    ("listMessages", 422): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token, params={"limit": "x"}
    ),
    ("sendAgentMessage", 400): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{m.add_agents(1)[0].id}/messages", token=m.token,
        json_body={"messages": [{"role": "user", "content": ""}]},
    ),
    ("sendAgentMessage", 401): lambda h, m: call(h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages"),
    ("sendAgentMessage", 404): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token, json_body=HELLO
    ),
    ("sendAgentMessage", 422): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token, json_body={}
    ),
    ("streamAgentMessage", 401): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages/stream"
    ),
    ("streamAgentMessage", 404): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages/stream", token=m.token, json_body=HELLO
    ),
    ("streamAgentMessage", 422): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages/stream", token=m.token, json_body={}
    ),
    ("streamAgentMessage", 503): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{m.add_agents(1)[0].id}/messages/stream", token=m.token,
        json_body={**HELLO, "background": True},
    ),
}  # fmt: skip
# As 0.11.7 these take no input FastAPI could refuse; as 0.16.8 a malformed agent id is their 422
# (test_mock_letta_messages.py::test_0_16_8_checks_the_agent_id_on_every_agent_route).
LETTA_FAULT_ONLY = {("retrieveAgent", 422), ("deleteAgent", 422)}
LETTA_CASES = sorted({(op, status) for op, status, _ in _documented("letta") if status >= 300})


def test_every_letta_error_is_either_natural_or_declared_fault_only() -> None:
    fault_only = {case for case in LETTA_CASES if case[1] in FAULT_ONLY_STATUSES} | LETTA_FAULT_ONLY
    assert set(LETTA_CASES) - set(LETTA_NATURAL) - fault_only == set()
    assert set(LETTA_NATURAL) - set(LETTA_CASES) == set(), "a trigger for a status the spec no longer has"


@pytest.mark.parametrize("case", LETTA_CASES, ids=lambda case: f"{case[0]}-{case[1]}")
async def test_letta_answer(
    http: aiohttp.ClientSession, letta_mock: LettaMock, case: tuple[str, int]
) -> None:
    operation_id, status = case
    agent = letta_mock.add_agent("present")
    scenario = LETTA_NATURAL.get(case)
    if scenario is not None:
        answer = await scenario(http, letta_mock)
    else:
        letta_mock.inject(operation_id, status=status)
        paths = {
            "listAgents": ("GET", "/v1/agents/"),
            "createAgent": ("POST", "/v1/agents/"),
            "retrieveAgent": ("GET", f"/v1/agents/{agent.id}"),
            "modifyAgent": ("PATCH", f"/v1/agents/{agent.id}"),
            "deleteAgent": ("DELETE", f"/v1/agents/{agent.id}"),
            "listMessages": ("GET", f"/v1/agents/{agent.id}/messages"),
            "sendAgentMessage": ("POST", f"/v1/agents/{agent.id}/messages"),
            "streamAgentMessage": ("POST", f"/v1/agents/{agent.id}/messages/stream"),
        }
        method, path = paths[operation_id]
        body: dict[str, Any] | None = None
        if method in ("POST", "PATCH"):
            body = (
                HELLO
                if path.endswith(("/messages", "/stream"))
                else {"name": "x", "model": "letta/letta-free"}
            )
        answer = await call(http, method, f"{letta_mock.url}{path}", token=letta_mock.token, json_body=body)
    assert answer.status == status, answer.body
    entries = [e for e in letta_mock.journal() if e.status == status]
    assert entries
    assert all(v.side == "request" for e in entries for v in e.violations)
