"""Hostile or sloppy input found by probing the running mock: deep JSON, trailing slashes, control-API
errors, fault and seed validation, and the journal's bounds."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from contracts.validation import Violation, validator_for
from mockgen import control
from mockgen.journal import VIOLATION_LIMIT, Journal
from mockgen.pytest_plugin import LettaMock, MatrixMock
from mockgen.store.errors import ControlError
from mockgen.world import MockConfig, World
from tests.support import call, login

AGENT = "agent-24018008-5ea1-4466-a8d1-127c48a64e70"

# Letta (FastAPI) reads a body as JSON only when it is sent as JSON (aiohttp labels a str body text/plain).
JSON_TYPE = {"Content-Type": "application/json"}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _record(journal: Journal, request_raw: bytes, violations: list[Violation]) -> None:
    journal.record(
        time=0.0, service="matrix", operation="createRoom", method="POST", path="/", query="", user=None,
        request_raw=request_raw, status=400, response_raw=b"", duration_ms=0.0, fault=None, variant=None,
        violations=violations,
    )  # fmt: skip


# -- deep JSON


@pytest.mark.mock_lenient
async def test_json_nested_too_deep_is_not_json(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    base = f"{matrix_mock.url}/_matrix/client/v3"
    undecodable = await call(http, "POST", f"{base}/login", data=_nested(5000))
    assert (undecodable.status, undecodable.errcode) == (400, "M_NOT_JSON")
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    # Decodable, but deeper than the mock takes (copies and checks recurse per level).
    deep = f'{{"creation_content": {{"x": {_nested(500)}}}}}'
    refused = await call(http, "POST", f"{base}/createRoom", data=deep, token=token)
    assert (refused.status, refused.errcode) == (400, "M_NOT_JSON")
    at_limit = f'{{"creation_content": {{"x": {_nested(398)}}}}}'  # 400 levels in all
    assert (await call(http, "POST", f"{base}/createRoom", data=at_limit, token=token)).status == 200
    journal = await call(http, "GET", f"{matrix_mock.url}/_mock/journal", headers=matrix_mock.control_headers)
    assert journal.status == 200
    assert [e["status"] for e in journal.body["entries"]] == [400, 200, 400, 200]


@pytest.mark.mock_lenient
async def test_letta_body_nested_too_deep_is_json_invalid(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    body = f'{{"name": "deep", "metadata": {{"x": {_nested(500)}}}}}'
    answer = await call(
        http, "POST", f"{letta_mock.url}/v1/agents/", data=body, token=letta_mock.token, headers=JSON_TYPE
    )
    assert answer.status == 422
    assert answer.body["detail"][0]["type"] == "json_invalid"


def test_journal_reads_a_body_too_deep_to_redact() -> None:
    journal = Journal()
    _record(journal, _nested(600).encode(), [])
    [entry] = journal.entries()
    assert entry.request_body == {"_raw": _nested(600)[:200]}


def test_journal_keeps_the_first_violations_and_counts_the_rest() -> None:
    journal = Journal()
    violation = Violation("request", "createRoom", "request body", "/preset", "enum", "one of ...", "'x'")
    _record(journal, b"{}", [violation] * (VIOLATION_LIMIT + 30))
    [entry] = journal.entries()
    shown = entry.to_json()
    assert (len(shown["violations"]), shown["violations_omitted"]) == (VIOLATION_LIMIT, 30)
    validator = validator_for("control")
    page = {"entries": [shown], "last_seq": 1, "dropped": 0}
    assert validator.check_body(validator.operations["controlJournal"], 200, page) == []


# -- trailing slashes and the control API's own errors


@pytest.mark.mock_lenient
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_matrix/client/v3/joined_rooms/"),
        ("POST", "/_matrix/client/v3/createRoom/"),
        ("GET", "/_matrix/client/v3/rooms/!a:matrix.test/state//"),
    ],
)
async def test_matrix_trailing_slash_is_unrecognized(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, method: str, path: str
) -> None:
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    answer = await call(http, method, f"{matrix_mock.url}{path}", token=token, allow_redirects=False)
    assert (answer.status, answer.errcode) == (404, "M_UNRECOGNIZED")


@pytest.mark.mock_lenient
@pytest.mark.parametrize(
    ("path", "token", "status", "location"),
    [
        (f"/v1/agents/{AGENT}/", None, 401, None),
        (f"/v1/agents/{AGENT}/", "token", 307, f"/v1/agents/{AGENT}"),
        (f"/v1/agents/{AGENT}/messages/?limit=2", "token", 307, f"/v1/agents/{AGENT}/messages?limit=2"),
        ("/v1/health", None, 307, "/v1/health/"),
        ("/v1/no-such-route/", "token", 404, None),
    ],
)
async def test_letta_trailing_slash_redirects_after_authentication(
    http: aiohttp.ClientSession, letta_mock: LettaMock, path: str, token: str | None, status: int,
    location: str | None,
) -> None:  # fmt: skip
    sent = letta_mock.token if token else None
    answer = await call(http, "GET", f"{letta_mock.url}{path}", token=sent, allow_redirects=False)
    assert answer.status == status
    if location is not None:
        assert answer.headers["Location"] == f"{letta_mock.url}{location}"


@pytest.mark.parametrize("service", ["matrix", "letta"])
async def test_control_errors_are_the_control_shape(
    http: aiohttp.ClientSession,
    matrix_mock: MatrixMock,
    letta_mock: LettaMock,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
) -> None:
    base = matrix_mock.url if service == "matrix" else letta_mock.url
    control = matrix_mock.control_headers
    for path in ("/_mock/nosuch", "/_mock/health/"):
        missing = await call(http, "GET", f"{base}{path}", allow_redirects=False, headers=control)
        assert (missing.status, missing.body) == (404, {"error": "no such control route"})
    wrong = await call(http, "DELETE", f"{base}/_mock/health", headers=control)
    assert (wrong.status, set(wrong.body), wrong.headers["Allow"]) == (405, {"error"}, "GET")

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(matrix_mock.world, "snapshot", broken)
    failed = await call(http, "GET", f"{base}/_mock/state", headers=control)
    assert (failed.status, set(failed.body)) == (500, {"error"})
    assert matrix_mock.journal() == []  # control requests are not journaled, routed or not


# -- fault validation


@pytest.mark.parametrize(
    ("fault", "complaint"),
    [
        ({"path": "^/v1/health/$", "status": 404}, "not documented for any operation"),
        ({"path": "createRoom", "status": 418}, "not documented for any operation"),
        ({"path": "(", "status": 500}, "not a regular expression"),
        ({"operation": "createRoom", "status": 500, "headers": {"X-A": "a\r\nInjected: 1"}}, "CR, LF"),
        ({"operation": "createRoom", "status": 500, "headers": {"X-☃": "1"}}, "field name"),
        ({"operation": "createRoom", "status": 500, "headers": {"X-A": "☃"}}, "latin-1"),
        ({"operation": "createRoom", "status": 500, "headers": {"Content-Length": "1"}}, "mock's to set"),
        ({"operation": "createRoom", "latency_ms": 5, "body": {}}, "need a status"),
        ({"operation": "createRoom", "drop_connection": True, "headers": {"X-A": "1"}}, "need a status"),
    ],
)
def test_faults_are_refused(fault: dict[str, Any], complaint: str) -> None:
    world = World()
    with pytest.raises(ControlError, match=complaint) as refused:
        control.install_fault(world, fault)
    assert refused.value.status == 400
    assert len(world.faults) == 0


def test_path_fault_with_a_status_some_matched_operation_documents() -> None:
    world = World()
    control.install_fault(world, {"path": "^/v1/agents/", "status": 404})
    control.install_fault(world, {"path": "/rooms/!abc:matrix.test/", "status": 403})  # no template: any op
    control.install_fault(world, {"operation": "createRoom", "status": 500, "headers": {"X-A": "é"}})
    assert len(world.faults) == 3


@pytest.mark.mock_lenient
async def test_bad_fault_path_over_http_is_a_control_error(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    answer = await call(
        http,
        "POST",
        f"{matrix_mock.url}/_mock/faults",
        json_body={"path": "(", "status": 500},
        headers=matrix_mock.control_headers,
    )
    assert answer.status == 400
    assert "regular expression" in answer.body["error"]


# -- seeding, all or nothing


@pytest.mark.parametrize(
    ("bad", "complaint"),
    [
        ({"users": [{"username": "_hidden", "password": "p"}]}, r"seed users\[1\]\.username"),
        ({"users": [{"username": "two words", "password": "p"}]}, r"seed users\[1\]\.username"),
        ({"agents": [{"name": "a", "created_at": "yesterday"}]}, r"seed agents\[1\]\.created_at"),
        ({"agents": [{"name": "a", "messages": [{"content": "no type"}]}]}, r"seed agents\[1\]\.messages"),
        ({"agents": [{"name": "a", "id": "agent-x"}]}, r"seed agents\[1\]: agent_id"),
        ({"rooms": [{"creator": "nobody"}]}, r"seed rooms\[1\]\.creator"),
        ({"rooms": [{"creator": "admin", "join": ["letta"]}]}, r"seed rooms\[1\]: "),  # not invited
        ({"letta_format": {"agents": "xml"}}, "agents format"),
    ],
)
@pytest.mark.parametrize("how", ["apply_seed", "reset"])
def test_a_failing_seed_changes_nothing(bad: dict[str, Any], complaint: str, how: str) -> None:
    world = World()
    before = world.snapshot()
    seed: dict[str, Any] = {
        "users": [{"username": "fine", "password": "p"}],
        "agents": [{"name": "fine"}],
        "rooms": [{"creator": "fine", "alias": "fine"}],
    }
    for key, value in bad.items():
        seed[key] = [*seed[key], *value] if isinstance(value, list) else value
    with pytest.raises(ControlError, match=complaint):
        getattr(world, how)(seed)  # reset(seed): the fresh world as a plain reset leaves it
    assert world.snapshot() == before
    assert world.matrix.aliases == {}


def test_a_reset_with_a_seed_adds_what_apply_seed_adds() -> None:
    seed = {"users": [{"username": "fine", "password": "p"}], "agents": [{"name": "fine"}]}
    applied, reset = World(MockConfig(random_seed=7)), World(MockConfig(random_seed=7))
    applied.reset()
    added = applied.apply_seed(seed)
    assert reset.reset(seed) == added
    assert reset.snapshot() == applied.snapshot()


def test_a_seed_may_use_the_users_and_aliases_it_adds() -> None:
    world = World()
    added = world.apply_seed(
        {
            "users": [{"username": "Bot", "password": "p"}],
            "agents": [{"name": "a", "created_at": "2026-11-22T07:15:10", "messages": [
                {"message_type": "user_message", "content": "hi"}
            ]}],
            "rooms": [{"creator": "bot", "alias": "lobby", "invite": ["admin"], "join": ["admin"]}],
        }
    )  # fmt: skip
    assert added["users"] == ["@bot:matrix.test"]
    with pytest.raises(ControlError, match="already taken"):
        world.apply_seed({"rooms": [{"creator": "admin", "alias": "lobby"}]})
    [message] = world.letta.list_messages(added["agents"][0]["id"])
    assert message["content"] == "hi"
