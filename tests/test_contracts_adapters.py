"""The validator core's adapters: the aiohttp client hook and recorded traffic (`contracts validate`)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from contracts.adapters.aiohttp_hook import ContractMiddleware, ContractViolationError
from contracts.exchanges import Exchange, read_exchanges, write_exchange
from contracts.harness.cli import main
from contracts.validation import validator_for
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.support import TIMEOUT


@pytest.mark.mock_lenient
async def test_hook_checks_and_records_what_a_client_does(matrix_mock: MatrixMock, tmp_path: Path) -> None:
    recording = tmp_path / "traffic.jsonl"
    hook = ContractMiddleware({matrix_mock.url: "matrix"}, record=recording)
    async with aiohttp.ClientSession(middlewares=(hook,), timeout=TIMEOUT) as session:
        login = f"{matrix_mock.url}/_matrix/client/v3/login"
        async with session.post(
            login, json={"type": "m.login.password", "user": "admin", "password": "admin_password"}
        ) as ok:
            token = (await ok.json())["access_token"]
        async with session.post(login, json={"type": "m.login.password", "user": "admin"}) as bad:
            assert bad.status == 400
        async with session.get(
            f"{matrix_mock.url}/_matrix/client/v3/joined_rooms", headers={"Authorization": f"Bearer {token}"}
        ):
            pass
    hook.close()
    assert [c.operation for c in hook.checked] == ["login", "login", "getJoinedRooms"]
    assert [v.message for v in hook.violations] == [
        "login: request body at /password: expected property 'password', got nothing (missing)"
    ]
    with pytest.raises(ContractViolationError, match="1 contract violation"):
        hook.assert_clean()
    lines = recording.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["request"]["body"]["password"] == "***"
    assert first["response"]["body"]["access_token"].endswith("…")
    assert json.loads(lines[2])["request"]["headers"]["Authorization"].startswith("Bearer syt_")
    assert "admin_password" not in recording.read_text()
    assert main(["validate", "--spec", "matrix", "--exchanges", str(recording)]) == 1
    assert [e.status for _, e in read_exchanges(recording)] == [200, 400, 200]


@pytest.mark.mock_lenient
async def test_strict_hook_raises_at_once(matrix_mock: MatrixMock, letta_mock: LettaMock) -> None:
    hook = ContractMiddleware({matrix_mock.url: "matrix"}, strict=True)
    async with aiohttp.ClientSession(middlewares=(hook,), timeout=TIMEOUT) as session:
        with pytest.raises(ContractViolationError, match="route: expected a documented path"):
            await session.get(f"{matrix_mock.url}/_matrix/client/v3/no_such_thing")
        async with session.get(f"{letta_mock.url}/v1/no_such_thing") as unchecked:
            assert unchecked.status == 401  # another host: passed through, not checked
    assert len(hook.checked) == 1


@pytest.mark.mock_lenient
async def test_a_base_url_matches_only_at_a_path_boundary(letta_mock: LettaMock) -> None:
    # The mock's URL without its port's last digit: a string prefix of it, but another server.
    hook = ContractMiddleware({letta_mock.url[:-1]: "letta", f"{letta_mock.url}/v1/agent": "letta"})
    async with (
        aiohttp.ClientSession(middlewares=(hook,), timeout=TIMEOUT) as session,
        session.get(f"{letta_mock.url}/v1/agents/", headers=letta_mock.headers) as answer,
    ):
        assert answer.status == 200
    assert hook.checked == []


def test_validate_recorded_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recording = tmp_path / "r.jsonl"
    good = {
        "method": "GET",
        "url": "http://h/v1/agents/",
        "request": {"headers": {"Authorization": "Bearer t"}},
        "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body": []},
    }
    broken = {
        "method": "GET",
        "url": "/v1/agents/?limit=ten",
        "request": {"headers": {}},
        "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body_text": "{nope"},
    }
    recording.write_text(json.dumps(good) + "\n\n" + json.dumps(broken) + "\n")
    assert main(["validate", "--spec", "letta", "--exchanges", str(recording)]) == 1
    out = capsys.readouterr().out
    assert f"{recording}:3: GET /v1/agents/ -> 200" in out
    assert "listAgents: query parameter 'limit': expected type integer, got string \"ten\"" in out
    assert "listAgents: response body: expected a JSON document" in out
    assert "2 exchange(s) checked, 1 with violations" in out
    recording.write_text(json.dumps(good) + "\n")
    assert main(["validate", "--spec", "letta", "--exchanges", str(recording), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checked"] == 1
    recording.write_text("{not an exchange}\n")
    assert main(["validate", "--spec", "letta", "--exchanges", str(recording)]) == 2


def test_validating_an_empty_recording_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "empty.jsonl"
    recording.write_text("\n")
    assert main(["validate", "--spec", "letta", "--exchanges", str(recording)]) == 2
    assert f"{recording} holds no exchanges: nothing to check" in capsys.readouterr().err


@pytest.mark.parametrize(
    "body",
    [b"\xef\xbb\xbf[]", "[]".encode("utf-16"), b"[NaN]"],
    ids=["utf-8 BOM", "utf-16", "NaN"],
)
def test_a_recording_keeps_a_malformed_body_exactly(tmp_path: Path, body: bytes) -> None:
    recording = tmp_path / "r.jsonl"
    headers = {"Content-Type": "application/json"}
    with recording.open("w", encoding="utf-8") as fh:
        write_exchange(fh, Exchange("GET", "http://h/v1/agents/", {}, b"", 200, headers, body))
    assert "body" not in json.loads(recording.read_text())["response"]  # not parsed, so not re-encoded
    [(_, recorded)] = read_exchanges(recording)
    assert recorded.response_body == body
    [violation] = [v for v in recorded.check(validator_for("letta")).violations if v.side == "response"]
    assert violation.message.startswith("listAgents: response body: expected a JSON document")
