"""What the validator core says: the operation, where, the JSON pointer, what was expected and what came."""

from __future__ import annotations

import json
from typing import Any

from contracts.validation import NoRoute, validator_for


def _request(service: str, method: str, path: str, body: Any = None, query: str = "") -> list[str]:
    validator = validator_for(service)
    route = validator.find(method, path)
    assert not isinstance(route, NoRoute)
    check = validator.check_request(
        route.operation,
        path_params=route.path_params,
        query=query,
        body=json.dumps(body).encode() if body is not None else None,
        content_type="application/json",
    )
    return [v.message for v in check.violations]


def _response(service: str, operation_id: str, status: int, body: Any) -> list[str]:
    validator = validator_for(service)
    problems, _ = validator.check_response(
        validator.operations[operation_id],
        status=status,
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
    )
    return [v.message for v in problems]


def test_request_body_messages() -> None:
    assert _request(
        "matrix", "POST", "/_matrix/client/v3/login", {"type": "m.login.password", "user": "a", "password": 5}
    ) == ["login: request body at /password: expected type string, got integer (redacted)"]
    assert _request("matrix", "PUT", "/_matrix/client/r0/profile/@a:b/displayname", {}) == [
        "setDisplayName: request body at /displayname: expected property 'displayname', got nothing (missing)"
    ]


def test_query_messages() -> None:
    assert _request("letta", "GET", "/v1/agents/", query="limit=ten&order=sideways") == [
        "listAgents: query parameter 'limit': expected type integer, got string \"ten\"",
        'listAgents: query parameter \'order\': expected one of "asc", "desc", got "sideways"',
    ]


def test_discriminated_union_messages_name_the_branch() -> None:
    bad = [
        {
            "id": "m",
            "date": "2026-11-22T07:15:10+00:00",
            "message_type": "tool_return_message",
            "tool_return": "x",
            "tool_call_id": "c",
        },
        {"id": "m", "date": "2026-11-22T07:15:10+00:00", "message_type": "telepathy"},
    ]
    assert _response("letta", "listMessages", 200, bad) == [
        "listMessages: response body at /0/status: expected property 'status', got nothing (missing)",
        'listMessages: response body at /1/message_type: expected one of "system_message", "user_message", '
        '"assistant_message", "reasoning_message", "hidden_reasoning_message", "tool_call_message", '
        '"tool_return_message", "approval_request_message", "approval_response_message", got "telepathy"',
    ]


def test_union_by_type_narrows_to_the_branch_of_the_instance() -> None:
    body = {
        "data": [
            {
                "id": "agent-24018008-5ea1-4466-a8d1-127c48a64e70",
                "name": None,
                "created_at": "2026-11-22T07:15:10",
            }
        ]
    }
    assert _response("letta", "listAgents", 200, body) == [
        "listAgents: response body at /data/0/name: expected type string, got null"
    ]


def test_status_and_errcode_messages() -> None:
    assert _response("matrix", "createRoom", 418, {}) == [
        "createRoom: response status: expected one of 200, 400, 401, 403, 404, 413, 429, 500, got 418"
    ]
    assert _response("matrix", "createRoom", 400, {"errcode": "M_TEAPOT"}) == [
        'createRoom: response body at /errcode: expected one of "M_ROOM_IN_USE", '
        '"M_UNSUPPORTED_ROOM_VERSION", '
        '"M_UNKNOWN", "M_BAD_JSON", "M_NOT_JSON", "M_INVALID_PARAM", "M_MISSING_PARAM", got "M_TEAPOT"'
    ]


def test_missing_response_header_and_routes() -> None:
    validator = validator_for("letta")
    problems, _ = validator.check_response(validator.operations["listAgentsRedirect"], status=307, headers={})
    assert [p.message for p in problems] == [
        "listAgentsRedirect: response header 'location': expected a value, got nothing"
    ]
    exchange = validator_for("matrix").check_exchange(
        method="PATCH", path="/_matrix/client/v3/createRoom", status=405
    )
    assert [v.message for v in exchange.violations] == [
        "(no operation): route: expected one of POST, got PATCH /_matrix/client/v3/createRoom"
    ]


def test_x_errcode_annotations() -> None:
    validator = validator_for("matrix")
    route = validator.find("POST", "/_matrix/client/v3/login")
    assert not isinstance(route, NoRoute)
    check = validator.check_request(
        route.operation, path_params=route.path_params, body=b'{"user": "a"}', content_type="application/json"
    )
    assert {(v.pointer, v.errcode) for v in check.violations} == {
        ("/type", "M_UNKNOWN"),
        ("/password", "M_INVALID_PARAM"),
    }
    route = validator.find("POST", "/_matrix/client/v3/createRoom")
    assert not isinstance(route, NoRoute)
    check = validator.check_request(
        route.operation,
        path_params=route.path_params,
        body=b'{"visibility": "bogus"}',
        content_type="application/json",
    )
    [visibility] = check.violations
    assert visibility.accepted
    assert check.rejected == []


def test_secrets_are_not_repeated_in_messages() -> None:
    messages = _request(
        "matrix",
        "POST",
        "/_matrix/client/v3/login",
        {"type": "m.login.password", "user": "a", "password": ["hunter2"]},
    )
    assert messages == ["login: request body at /password: expected type string, got array (redacted)"]
