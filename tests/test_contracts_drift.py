"""Drift detection without live servers: the corpus against the mock, a deliberately wrong contract, the
served-OpenAPI diff and the upstream diff on small synthetic documents."""

from __future__ import annotations

import copy
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from contracts.harness.cli import main
from contracts.harness.corpus import load_corpus
from contracts.harness.differential import DifferentialReport, agreement, compare, run_differential
from contracts.harness.live import check, is_loopback
from contracts.served import compare_served
from contracts.specs import resolved_copy
from contracts.upstream import compare as compare_upstream
from contracts.validation import ContractValidator, validator_for
from mockgen.pytest_plugin import LettaMock, MatrixMock
from mockgen.server import MockServers
from mockgen.world import DEFAULT_LETTA_TOKEN, MockConfig, World

pytestmark = pytest.mark.mock_lenient  # the corpus sends invalid requests on purpose
# The corpus's chat steps need `llm_url` for the agent that chats; the mock never calls an agent's LLM (its
# own answers as the project's fake LLM does: mockgen.store.letta_llm), so an address nothing serves does.
UNUSED_LLM_URL = "http://127.0.0.1:9/v1"


async def test_the_corpus_meets_the_contract_on_the_mock(
    matrix_mock: MatrixMock, letta_mock: LettaMock
) -> None:
    admin = matrix_mock.world.matrix.login(user="admin", password="admin_password")["access_token"]
    report = await check(
        {"matrix": matrix_mock.url, "letta": letta_mock.url},
        letta_token=letta_mock.token,
        matrix_admin_token=admin,
        llm_url=UNUSED_LLM_URL,
    )
    assert report.drift == []
    assert [o.step.name for o in report.unexpected] == []
    assert report.skipped == []
    chat = [o for o in report.outcomes if "llm_url" in o.step.needs]
    assert len(chat) >= 50
    assert report.served is None
    assert report.served_note
    assert "serves no /openapi.json" in report.served_note
    operations = {v.operation for v in report.verdicts}
    documented = {op.operation_id for s in ("matrix", "letta") for op in validator_for(s).iter_operations()}
    # createAgentRedirect: what a client never needs to call.
    assert documented - operations == {"createAgentRedirect"}


async def test_a_wrong_contract_is_reported_with_its_location(matrix_mock: MatrixMock) -> None:
    wrong = resolved_copy("matrix")
    schema = wrong["paths"]["/_matrix/client/{version}/createRoom"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    schema["required"] = [*schema["required"], "room_alias"]
    report = await check(
        {"matrix": matrix_mock.url}, validators={"matrix": ContractValidator(wrong, name="wrong")}
    )
    drifted = {verdict.operation: verdict for verdict in report.drift}
    # the response object is shared, so operations answering with it drift too
    assert set(drifted) == {"createRoom", "joinRoom", "joinRoomById"}
    verdict = drifted["createRoom"]
    assert verdict.result == "schema mismatch"
    assert (
        "createRoom: response body at /room_alias: expected property 'room_alias', got nothing (missing)"
        in (verdict.problems[0])
    )


def test_differential_comparison() -> None:
    from contracts.harness.scenario import Outcome, Step

    step = Step("s", "matrix", "GET", "/x")
    ok = Outcome(step, 200, None, (), {}, None, [])
    other = Outcome(step, 403, "M_FORBIDDEN", (), {}, None, [])
    assert [str(d) for d in compare([ok], [other])] == ["'s': status differs (mock 200, real 403)"]
    assert agreement([ok, ok], [ok, other]) == 0.5


async def test_differential_without_a_letta_token_skips_the_same_steps_on_both_sides(
    letta_mock: LettaMock,
) -> None:
    report = await run_differential("letta", letta_mock.url)
    assert report.disagreements == []
    skipped = [outcome.step.name for outcome in report.mock if outcome.skipped]
    assert skipped == [outcome.step.name for outcome in report.real if outcome.skipped]
    assert "list" in skipped
    assert report.compared >= 3  # health and the steps that send no token or a wrong one
    without_token = [name for name, why in _skipped(report) if why == "needs letta_token"]
    assert f"note: {len(without_token)} step(s) not compared: needs letta_token" in report.to_text()
    assert {why for _, why in _skipped(report)} == {
        "needs letta_token",
        "needs llm_url, letta_token",
        "needs llm_url",
    }


def _skipped(report: DifferentialReport) -> list[tuple[str, str | None]]:
    return [(outcome.step.name, outcome.skipped) for outcome in report.mock if outcome.skipped]


async def _refused(request: web.Request) -> web.Response:
    return web.Response(status=401)


async def test_a_refused_openapi_document_is_a_note_not_a_crash() -> None:
    app = web.Application()
    app.router.add_get("/openapi.json", _refused)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        report = await check({"letta": base}, letta_token="t", steps=[])
    finally:
        await runner.cleanup()
    assert report.served is None
    assert report.served_note == f"{base} answers 401 Unauthorized; the served-document diff was not run"


class _NotHttp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"NOT HTTP\r\n\r\n")


@pytest.fixture
def not_http() -> Iterator[str]:
    """The base URL of a server that answers anything with something that is not HTTP."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _NotHttp) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        thread.join()


@pytest.mark.parametrize("command", ["check", "differential"])
def test_a_server_that_does_not_speak_http_is_an_environment_error(
    command: str, not_http: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--letta", not_http]) == 2
    err = capsys.readouterr().err
    assert f"contracts {command}: a server could not be talked to (ClientResponseError): {not_http}/" in err


def test_only_loopback_unless_allowed() -> None:
    assert is_loopback("http://127.0.0.1:8008")
    assert is_loopback("http://[::1]:8008")
    assert is_loopback("http://localhost:8283")
    assert not is_loopback("http://10.0.0.5:8008")
    assert not is_loopback("https://matrix.example.org")


def _served_from_ours() -> dict[str, Any]:
    """A stand-in for Letta's /openapi.json: our own document minus what FastAPI does not list."""
    served = resolved_copy("letta")
    del served["paths"]["/v1/agents"]
    for parameter in served["paths"]["/v1/agents/"]["get"]["parameters"]:
        parameter.pop("x-not-in-server-openapi", None)
    return served


def test_served_document_diff() -> None:
    letta = validator_for("letta")
    assert compare_served(letta, _served_from_ours()).drift == []
    served = _served_from_ours()
    messages = served["paths"]["/v1/agents/{agent_id}/messages"]["get"]
    messages["parameters"] = [p for p in messages["parameters"] if p["name"] != "after"]
    agent = served["paths"]["/v1/agents/{agent_id}"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    del agent["properties"]["name"]
    drift = [str(finding) for finding in compare_served(letta, served).drift]
    # the Agent schema is one object in the served document, so every operation answering with it drifts
    assert drift == [
        "DRIFT listAgents: 200 body (bare array) /name: we require it; the server's schema has no such field",
        "DRIFT createAgent: 200 body /name: we require it; the server's schema has no such field",
        "DRIFT retrieveAgent: 200 body /name: we require it; the server's schema has no such field",
        "DRIFT modifyAgent: 200 body /name: we require it; the server's schema has no such field",
        "DRIFT listMessages: query parameter 'after': not taken by the server",
    ]


def test_an_acknowledged_path_item_parameter_is_a_note_not_drift() -> None:
    ours = resolved_copy("letta")
    item = ours["paths"]["/v1/agents/{agent_id}/messages"]
    [after] = [p for p in item["get"]["parameters"] if p["name"] == "after"]
    item["get"]["parameters"].remove(after)
    item["parameters"].append({**after, "x-not-in-server-openapi": "a newer server's cursor"})
    served = _served_from_ours()
    messages = served["paths"]["/v1/agents/{agent_id}/messages"]["get"]
    messages["parameters"] = [p for p in messages["parameters"] if p["name"] != "after"]
    report = compare_served(ContractValidator(ours, name="path-item"), served)
    assert report.drift == []
    assert (
        "note  listMessages: query parameter 'after': not taken by the server: a newer server's cursor"
        in [str(finding) for finding in report.findings]
    )


UPSTREAM_LOGIN = {
    "openapi": "3.1.0",
    "info": {"title": "login", "version": "1"},
    "servers": [{"url": "{basePath}", "variables": {"basePath": {"default": "/_matrix/client/v3"}}}],
    "paths": {
        "/login": {
            "post": {
                "operationId": "login",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "definitions/login_response.yaml"},
                                "examples": {"broken": {"$ref": "../missing/example.yaml"}},
                            }
                        },
                    }
                },
            }
        }
    },
}


def test_upstream_diff_reports_missing_operations_and_weaker_required_fields(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "api" / "client-server"
    (folder / "definitions").mkdir(parents=True)
    (folder / "login.yaml").write_text(yaml.safe_dump(UPSTREAM_LOGIN))
    (folder / "definitions" / "login_response.yaml").write_text(
        yaml.safe_dump({"type": "object", "required": ["user_id", "access_token", "device_id"]})
    )
    ours = resolved_copy("matrix")
    paths = {path: item for path, item in ours["paths"].items() if path.endswith("/login")}
    ours = {**ours, "paths": paths}
    weaker = copy.deepcopy(ours)
    weaker["paths"]["/_matrix/client/{version}/login"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]["required"] = ["user_id", "access_token"]
    report = compare_upstream(ContractValidator(weaker, name="weaker"), tmp_path)
    assert report.matched == {"login": "login"}
    assert [(f.operation, f.kind, f.location) for f in report.drift] == [
        ("getLoginFlows", "missing-upstream", "GET /_matrix/client/{version}/login"),
        ("login", "required-field", "200 response body /device_id"),
    ]


async def test_the_differential_answers_as_the_letta_release_asked_for() -> None:
    """`letta_version` picks the mock's release: against a mock of 0.16.8, the mock as 0.16.8 agrees on
    every step, chat included, and the mock as 0.11.7 does not."""
    servers = MockServers(World(MockConfig(letta_version="0.16.8")))
    servers.start()
    try:
        base = servers.endpoints.letta
        same = await run_differential(
            "letta", base, letta_token=DEFAULT_LETTA_TOKEN, llm_url=UNUSED_LLM_URL, letta_version="0.16.8"
        )
        older = await run_differential("letta", base, letta_token=DEFAULT_LETTA_TOKEN, llm_url=UNUSED_LLM_URL)
    finally:
        servers.stop()
    assert [str(d) for d in same.disagreements] == []
    assert same.compared == len(load_corpus("letta"))
    assert "send a message" in {d.step for d in older.disagreements}
