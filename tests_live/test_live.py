"""Our contracts against real servers: `contracts check` passes on both, the mock and each real server
agree on every step of the scenario corpus, a wrong contract is reported with its location, and the
reference bridge syncs real Letta agents into a real Synapse."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from contracts.harness.cli import main as contracts_main
from contracts.harness.differential import run_differential
from contracts.harness.live import check
from contracts.specs import resolved_copy
from contracts.validation import ContractValidator
from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.store import MAPPING_FILE, MappingFile
from letta_matrix_reference.bridge.sync import Bridge
from letta_matrix_reference.bridge.users import agent_localpart
from tests.nio_flow import run_nio_flow, send_with_nio
from tests_live.conftest import SEEDED_AGENTS, Homeserver, Letta

TIMEOUT = aiohttp.ClientTimeout(total=30)


def _check(
    reports: Path, name: str, arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    """`contracts check` as CI runs it; the printed report is kept for a person to read."""
    report = reports / f"check-{name}.json"
    code = contracts_main(["check", *arguments, "--report", str(report)])
    (reports / f"check-{name}.txt").write_text(capsys.readouterr().out, encoding="utf-8")
    assert code == 0, (reports / f"check-{name}.txt").read_text()
    found: dict[str, Any] = json.loads(report.read_text())
    return found


def test_contracts_check_passes_against_synapse(
    synapse: Homeserver, reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _check(
        reports, "synapse", ["--matrix", synapse.url, f"--matrix-admin-token={synapse.admin_token}"], capsys
    )
    assert report["drift"] is False
    assert report["skipped"] == []
    assert len(report["operations"]) >= 20
    assert {op["result"] for op in report["operations"]} == {"ok"}


def test_contracts_check_passes_against_letta(
    letta: Letta, reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _check(
        reports,
        "letta",
        ["--letta", letta.url, f"--letta-token={letta.token}", f"--letta-llm={letta.llm.url}"],
        capsys,
    )
    assert report["drift"] is False
    assert report["skipped"] == []
    assert report["unexpected_statuses"] == []
    assert {op["result"] for op in report["operations"]} == {"ok"}
    # Letta serves its own OpenAPI document; ours was compared with it, operation by operation
    assert report["served_openapi"] is not None
    assert len(report["served_openapi"]["compared"]) >= 6
    assert [f for f in report["served_openapi"]["findings"] if f["drift"]] == []


async def test_mock_and_synapse_agree_on_every_step(synapse: Homeserver, reports: Path) -> None:
    report = await run_differential("matrix", synapse.url, matrix_admin_token=synapse.admin_token)
    (reports / "differential-synapse.txt").write_text(report.to_text() + "\n", encoding="utf-8")
    assert [str(d) for d in report.disagreements] == []
    assert report.compared >= 90


async def test_mock_and_letta_agree_on_every_step(letta: Letta, reports: Path) -> None:
    report = await run_differential("letta", letta.url, letta_token=letta.token, llm_url=letta.llm.url)
    (reports / "differential-letta.txt").write_text(report.to_text() + "\n", encoding="utf-8")
    assert [(o.step.name, o.status, o.skipped) for o in report.real if o.unexpected or o.skipped] == []
    assert [str(d) for d in report.disagreements] == []
    chat = [o for o in report.real if "llm_url" in o.step.needs and not o.skipped]
    assert len(chat) >= 50
    assert report.compared >= 100


async def test_a_wrong_contract_is_drift_with_its_location(synapse: Homeserver) -> None:
    wrong = resolved_copy("matrix")
    whoami = wrong["paths"]["/_matrix/client/{version}/account/whoami"]["get"]["responses"]["200"]
    schema = whoami["content"]["application/json"]["schema"]
    schema["required"] = [*schema["required"], "is_guest_of_honour"]
    report = await check(
        {"matrix": synapse.url},
        matrix_admin_token=synapse.admin_token,
        validators={"matrix": ContractValidator(wrong, name="wrong")},
    )
    drifted = {verdict.operation: verdict for verdict in report.drift}
    assert list(drifted) == ["getTokenOwner"]
    assert drifted["getTokenOwner"].result == "schema mismatch"
    assert (
        "response body at /is_guest_of_honour: expected property 'is_guest_of_honour'"
        in (drifted["getTokenOwner"].problems[0])
    )
    assert "drift: 1 operation(s)" in report.to_text()


async def _get(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, Any]:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
        return answer.status, await answer.json()


async def test_the_bridge_syncs_real_letta_agents_into_real_synapse(
    synapse: Homeserver, letta: Letta, bridge_config: BridgeConfig
) -> None:
    config = bridge_config
    async with Bridge(config) as bridge:
        first = await bridge.sync_once()
    assert first.failed == []
    assert first.agents_seen >= len(SEEDED_AGENTS)
    assert (first.users_created, first.rooms_created) == (first.agents_seen, first.agents_seen)

    async with Bridge(config) as bridge:
        second = await bridge.sync_once()
    assert (second.failed, second.users_created, second.rooms_created) == ([], 0, 0)

    state = MappingFile(config.data_dir / MAPPING_FILE).load()
    assert state.space_id is not None
    base = f"{synapse.url}/_matrix/client/v3"
    bot = f"@{config.bot_user}:{synapse.server_name}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        status, agents = await _get(session, f"{letta.url}/v1/agents/", letta.token)
        assert status == 200
        for agent in agents:
            user_id = f"@{agent_localpart(agent['id'])}:{synapse.server_name}"
            status, profile = await _get(
                session, f"{base}/profile/{quote(user_id)}/displayname", synapse.admin_token
            )
            assert (status, profile.get("displayname")) == (200, agent["name"])
            room = state.agents[agent["id"]].room_id
            assert room is not None
            status, child = await _get(
                session,
                f"{base}/rooms/{quote(state.space_id)}/state/m.space.child/{quote(room)}",
                synapse.admin_token,
            )
            assert status == 200
            assert child["via"] == [synapse.server_name]
            status, events = await _get(session, f"{base}/rooms/{quote(room)}/state", synapse.admin_token)
            assert status == 200
            joined = {
                event["state_key"]
                for event in events
                if event["type"] == "m.room.member" and event["content"].get("membership") == "join"
            }
            assert {user_id, f"@{synapse.admin_user}:{synapse.server_name}", bot} <= joined


async def test_matrix_nio_receives_a_message_through_sync_forever_on_synapse(synapse: Homeserver) -> None:
    """The flow tests/test_nio_client.py runs on the mock, on real Synapse: two users made with the admin
    API, the other one sending with a second nio client; nio's callback gets the message through
    sync_forever."""
    admin = {"Authorization": f"Bearer {synapse.admin_token}"}
    suffix = secrets.token_hex(4)
    users: list[tuple[str, str]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(f"{synapse.url}/_matrix/client/v3/account/whoami", headers=admin) as answer:
            answer.raise_for_status()
            server_name = str((await answer.json())["user_id"]).split(":", 1)[1]
        for name in ("nio-alice", "nio-bob"):
            user_id, password = f"@{name}-{suffix}:{server_name}", secrets.token_urlsafe(12)
            async with session.put(
                f"{synapse.url}/_synapse/admin/v2/users/{quote(user_id)}",
                json={"password": password, "admin": False},
                headers=admin,
            ) as answer:
                assert answer.status == 201, await answer.text()
            users.append((user_id, password))

    result = await run_nio_flow(synapse.url, users[0], users[1], send_with_nio)
    assert len(result.received) == 1
    assert result.history[:2] == ["hello from bob", "before the sync"]
