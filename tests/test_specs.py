"""The contracts themselves: valid OpenAPI 3.0, resolvable, complete, and self-consistent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_spec_validator import validate
from prance import ResolvingParser

from contracts.specs import SPEC_FILES, load_raw, load_resolved
from contracts.validation import ContractValidator, NoRoute, RouteMatch, validator_for
from contracts.validation.sse import DONE, SSE_MEDIA_TYPE, Event, encode_event

SPECS = ("letta", "matrix", "control")
HTTP_METHODS = ("get", "put", "post", "delete", "patch")

# Every (method, path) a bridge calls. None of them may silently disappear from the specs.
MATRIX_CLIENT_CALLS = [
    ("POST", "login"),
    ("POST", "register"),
    ("GET", "profile/@agent_x:matrix.test/displayname"),
    ("PUT", "profile/@agent_x:matrix.test/displayname"),
    ("POST", "createRoom"),
    ("POST", "rooms/!room:matrix.test/join"),
    ("POST", "join/#alias:matrix.test"),
    ("POST", "rooms/!room:matrix.test/invite"),
    ("GET", "rooms/!room:matrix.test/state"),
    ("GET", "rooms/!room:matrix.test/state/m.room.name"),
    ("PUT", "rooms/!room:matrix.test/state/m.room.name"),
    ("GET", "rooms/!room:matrix.test/state/m.room.create"),
    ("GET", "rooms/!space/state/m.space.child/!room"),
    ("PUT", "rooms/!space/state/m.space.child/!room"),
    ("GET", "rooms/!room/state/m.space.parent/!space"),
    ("PUT", "rooms/!room/state/m.space.parent/!space"),
    ("GET", "joined_rooms"),
    ("GET", "account/whoami"),
    ("PUT", "rooms/!room:matrix.test/send/m.room.message/txn1"),
]
REQUIRED_CALLS = {
    "matrix": [
        (method, f"/_matrix/client/{version}/{tail}")
        for version in ("r0", "v3")
        for method, tail in MATRIX_CLIENT_CALLS
    ]
    + [
        ("GET", "/_matrix/client/versions"),
        ("GET", "/_synapse/admin/v2/users/@someone:matrix.test"),
        ("PUT", "/_synapse/admin/v2/users/@someone:matrix.test"),
    ],
    "letta": [
        ("GET", "/v1/agents"),
        ("GET", "/v1/agents/"),
        ("GET", "/v1/agents/agent-24018008-5ea1-4466-a8d1-127c48a64e70"),
        ("GET", "/v1/agents/agent-24018008-5ea1-4466-a8d1-127c48a64e70/messages"),
    ],
}


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


@pytest.mark.parametrize("name", SPECS)
def test_spec_is_valid_openapi_3_0(name: str) -> None:
    raw = load_raw(name)
    assert raw["openapi"].startswith("3.0.")
    validate(raw)


@pytest.mark.parametrize("name", SPECS)
def test_prance_resolves_every_reference(name: str) -> None:
    parser = ResolvingParser(str(SPEC_FILES[name]), backend="openapi-spec-validator", strict=False)
    assert "$ref" not in json.dumps(parser.specification)
    assert "$ref" not in json.dumps(load_resolved(name))


@pytest.mark.parametrize("name", SPECS)
def test_every_operation_has_a_unique_operation_id(name: str) -> None:
    ids = [op.get("operationId") for _, _, op in _operations(load_raw(name))]
    assert all(ids), "an operation lacks an operationId"
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", SPECS)
def test_every_documented_status_has_an_example(name: str) -> None:
    missing = []
    for path, method, operation in _operations(load_resolved(name)):
        for status, response in operation["responses"].items():
            for media, content in response.get("content", {}).items():
                if "example" not in content and not content.get("examples"):
                    missing.append(f"{method.upper()} {path} {status} {media}")
    assert missing == []


class _Request:
    """The request side openapi-core needs to find the operation of a response example."""

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path
        self.host_url = "http://localhost"
        self.full_url_pattern = "http://localhost" + path
        self.content_type = "application/json"
        self.body = b""
        self.parameters = RequestParameters(query={}, header={}, cookie={})


class _Response:
    def __init__(self, status: int, data: bytes, headers: dict[str, str], content_type: str) -> None:
        self.status_code = status
        self.data = data
        self.content_type = content_type
        self.headers = headers


def _concrete(path: str) -> str:
    return (
        path.replace("{version}", "v3")
        .replace("{userId}", "@agent_x:matrix.test")
        .replace("{agent_id}", "agent-24018008-5ea1-4466-a8d1-127c48a64e70")
        .replace("{", "x")
        .replace("}", "")
    )


def _response_examples(name: str) -> Iterator[tuple[str, str, str, str, str, Any]]:
    for path, method, operation in _operations(load_resolved(name)):
        for status, response in operation["responses"].items():
            for media, content in response.get("content", {}).items():
                examples = dict(content.get("examples", {}))
                if "example" in content:
                    examples["example"] = {"value": content["example"]}
                for example_name, example in examples.items():
                    yield path, method, status, media, example_name, example["value"]


def test_every_event_stream_example_validates_as_a_stream() -> None:
    """openapi-core cannot read `text/event-stream`; an example event, framed as a stream, passes ours."""
    ours = validator_for("letta")
    checked = 0
    for path, method, status, media, example_name, value in _response_examples("letta"):
        if media != SSE_MEDIA_TYPE:
            continue
        operation = next(
            op for op in ours.iter_operations() if (op.path, op.method) == (path, method.upper())
        )
        event = Event(value["event"], value["data"])
        body = encode_event(event.data, event.event) + (b"" if event.terminal else encode_event(DONE))
        headers = {"content-type": SSE_MEDIA_TYPE}
        problems, _ = ours.check_response(operation, status=int(status), headers=headers, body=body)
        assert problems == [], f"{method} {path} {status} {example_name}"
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("name", ["letta", "matrix", "control"])
def test_every_response_example_validates_with_openapi_core(name: str) -> None:
    """openapi-core's own (slow, full) response validation, independent of our compiled validator."""
    openapi = OpenAPI.from_dict(load_resolved(name))
    ours = validator_for(name)
    checked = 0
    for path, method, status, media, example_name, value in _response_examples(name):
        if media == SSE_MEDIA_TYPE:
            continue  # openapi-core cannot read an event stream: the test above checks those
        headers = {"Retry-After": "1", "Location": "http://localhost/"}
        request = _Request(method, _concrete(path))
        # A text body (a proxy's error page) is sent as its text, every other as JSON.
        data = value.encode() if media.startswith("text/") else json.dumps(value).encode()
        response = _Response(int(status), data, headers, media)
        openapi.validate_response(request, response)
        operation = ours.operations[
            next(op["operationId"] for p, m, op in _operations(ours.spec) if (p, m) == (path, method))
        ]
        problems, _ = ours.check_response(
            operation,
            status=int(status),
            headers={**headers, "content-type": media},
            body=response.data,
        )
        assert problems == [], f"{method} {path} {status} {example_name}"
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("name", SPECS)
def test_every_request_body_example_validates(name: str) -> None:
    validator = validator_for(name)
    checked = 0
    for operation in validator.iter_operations():
        body = operation.definition.get("requestBody")
        if not body:
            continue
        for content in body["content"].values():
            for example_name, example in content.get("examples", {}).items():
                path_params = {p.name: p.example for (loc, _), p in operation.params.items() if loc == "path"}
                check = validator.check_request(
                    operation,
                    path_params=path_params,
                    body=json.dumps(example["value"]).encode(),
                    content_type="application/json",
                    query="username=x" if operation.operation_id == "checkUsernameAvailability" else "",
                )
                assert check.violations == [], f"{operation.operation_id} {example_name}"
                checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    ("name", "method", "path"), [(n, m, p) for n, calls in REQUIRED_CALLS.items() for m, p in calls]
)
def test_required_calls_are_in_the_spec(name: str, method: str, path: str) -> None:
    route = validator_for(name).find(method, path)
    assert isinstance(route, RouteMatch), f"{method} {path} has no operation in specs/{name}.yaml"
    version = route.path_params.get("version")
    if version is not None:
        check = validator_for(name).check_request(
            route.operation, path_params=route.path_params, body=b"{}", content_type="application/json"
        )
        assert not [v for v in check.violations if v.location.startswith("path")], f"{version} not served"


def test_client_versions_outside_r0_and_v3_are_not_routes() -> None:
    validator = validator_for("matrix")
    route = validator.find("GET", "/_matrix/client/v2/joined_rooms")
    assert isinstance(route, RouteMatch)
    check = validator.check_request(route.operation, path_params=route.path_params)
    assert [v.location for v in check.violations] == ["path parameter 'version'"]
    assert isinstance(validator.find("GET", "/_matrix/client/v3/no_such_endpoint"), NoRoute)


def test_authenticated_matrix_operations_document_the_401_errcodes() -> None:
    for operation in validator_for("matrix").iter_operations():
        if not operation.auth_required:
            continue
        spec = operation.responses["401"]
        schema = spec.media_types["application/json"][0]
        errcodes = {"M_MISSING_TOKEN", "M_UNKNOWN_TOKEN", "M_USER_LOCKED"}
        assert set(schema["properties"]["errcode"]["enum"]) == errcodes
        assert "soft_logout" in schema["properties"], operation.operation_id


def test_rate_limited_answers_carry_retry_after() -> None:
    for operation in validator_for("matrix").iter_operations():
        spec = operation.responses.get("429")
        if spec is not None:
            assert "retry-after" in spec.headers
            assert "retry_after_ms" in spec.media_types["application/json"][0]["properties"]


AGENT = {"id": "agent-24018008-5ea1-4466-a8d1-127c48a64e70", "name": "a", "created_at": "2026-11-22T07:15:10"}
MESSAGES = [
    {"id": "m1", "date": "2026-11-22T07:15:10+00:00", "message_type": "system_message", "content": "sys"},
    {"id": "m2", "date": "2026-11-22T07:15:10+00:00", "message_type": "user_message", "content": "hi"},
    {
        "id": "m3",
        "date": "2026-11-22T07:15:10+00:00",
        "message_type": "user_message",
        "content": [{"type": "text", "text": "hi"}],
    },
    {
        "id": "m4",
        "date": "2026-11-22T07:15:10+00:00",
        "message_type": "assistant_message",
        "content": [{"type": "text", "text": "yo"}],
    },
    {
        "id": "m5",
        "date": "2026-11-22T07:15:10+00:00",
        "message_type": "reasoning_message",
        "reasoning": "hmm",
    },
    {
        "id": "m6",
        "date": "2026-11-22T07:15:10+00:00",
        "message_type": "tool_call_message",
        "tool_call": {"name": "send_message", "arguments": "{}", "tool_call_id": "c1"},
    },
    {
        "id": "m7",
        "date": "2026-11-22T07:15:10+00:00",
        "message_type": "tool_return_message",
        "tool_return": "None",
        "status": "success",
        "tool_call_id": "c1",
    },
]


@pytest.mark.parametrize(
    ("body", "variant"),
    [
        ([AGENT, {**AGENT, "extra_field_from_a_newer_server": {"x": 1}}], "bare array"),
        ([], "bare array"),
        ({"data": [AGENT], "cursor": AGENT["id"]}, "envelope"),
        ({"data": [], "cursor": None}, "envelope"),
        ([{**AGENT, "created_at": "2026-11-22T07:18:15.706047Z"}], "bare array"),
    ],
)
def test_both_letta_list_formats_validate(body: Any, variant: str) -> None:
    validator = validator_for("letta")
    operation = validator.operations["listAgents"]
    problems, found = validator.check_response(
        operation, status=200, headers={"content-type": "application/json"}, body=json.dumps(body).encode()
    )
    assert problems == []
    assert found == variant


@pytest.mark.parametrize(
    ("body", "variant"), [(MESSAGES, "bare array"), ({"items": MESSAGES}, "items object")]
)
def test_both_letta_message_formats_validate(body: Any, variant: str) -> None:
    validator = validator_for("letta")
    problems, found = validator.check_response(
        validator.operations["listMessages"],
        status=200,
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
    )
    assert problems == []
    assert found == variant


def test_agent_without_required_fields_is_refused() -> None:
    validator = validator_for("letta")
    problems, _ = validator.check_response(
        validator.operations["listAgents"],
        status=200,
        headers={"content-type": "application/json"},
        body=json.dumps([{"id": AGENT["id"], "name": "a"}]).encode(),
    )
    assert [(p.pointer, p.keyword) for p in problems] == [("/0/created_at", "required")]


def test_a_spec_file_outside_the_project_is_checked_on_load(tmp_path: Any) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n      responses: {}\n"
    )
    with pytest.raises(Exception, match="responses"):
        ContractValidator(load_raw(broken), name="broken", check_spec=True)
