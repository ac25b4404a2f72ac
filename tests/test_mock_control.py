"""The control API (contract-first, on both servers) and fault injection."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from mockgen.pytest_plugin import LettaMock, MatrixMock
from mockgen.store.errors import ControlError
from tests.support import call, login


async def test_control_api_on_both_servers(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, letta_mock: LettaMock
) -> None:
    control = matrix_mock.control_headers
    for base, service in ((matrix_mock.url, "matrix"), (letta_mock.url, "letta")):
        health = await call(http, "GET", f"{base}/_mock/health", headers=control)
        assert health.body == {"status": "ok", "service": service}
    seeded = await call(
        http, "POST", f"{matrix_mock.url}/_mock/seed", headers=control,
        json_body={
            "users": [{"username": "bot", "password": "botpw"}],
            "agents": [{"name": "one"}, {"name": "two", "tags": ["t"]}],
            "rooms": [
                {"creator": "admin", "name": "Space", "space": True, "invite": ["bot"], "join": ["bot"]}
            ],
        },
    )  # fmt: skip
    assert seeded.status == 200
    assert seeded.body["users"] == ["@bot:matrix.test"]
    state = await call(http, "GET", f"{letta_mock.url}/_mock/state", headers=control)
    assert [a["name"] for a in state.body["agents"]] == ["one", "two"]
    [space] = state.body["rooms"]
    assert space["is_space"]
    assert space["members"]["@bot:matrix.test"] == "join"
    agent_id = seeded.body["agents"][0]["id"]
    renamed = await call(
        http, "PATCH", f"{letta_mock.url}/_mock/agents/{agent_id}", json_body={"name": "uno"}, headers=control
    )
    assert renamed.body == {"id": agent_id, "name": "uno"}
    removed = [
        (await call(http, "DELETE", f"{letta_mock.url}/_mock/agents/{agent_id}", headers=control)).status
        for _ in range(2)
    ]
    assert removed == [200, 404]
    added = await call(
        http, "POST", f"{letta_mock.url}/_mock/agents", json_body={"name": "three"}, headers=control
    )
    assert added.status == 201
    fmt = await call(
        http, "PUT", f"{letta_mock.url}/_mock/letta/format", json_body={"agents": "envelope"}, headers=control
    )
    assert fmt.body == {"agents": "envelope", "messages": "array"}
    listed = await call(http, "GET", f"{letta_mock.url}/v1/agents/", token=letta_mock.token)
    assert set(listed.body) == {"data", "cursor"}
    bad = await call(
        http, "PUT", f"{letta_mock.url}/_mock/letta/format", json_body={"agents": "xml"}, headers=control
    )
    assert bad.status == 400
    assert "agents" in bad.body["error"]
    journal = await call(
        http, "GET", f"{matrix_mock.url}/_mock/journal", params={"service": "letta"}, headers=control
    )
    assert [e["operation"] for e in journal.body["entries"]] == [
        "listAgents"
    ]  # control calls are not journaled
    reset = await call(http, "POST", f"{letta_mock.url}/_mock/reset", headers=control)
    assert reset.body == {"reset": True}
    state = await call(http, "GET", f"{letta_mock.url}/_mock/state", headers=control)
    assert state.body["agents"] == []
    assert state.body["letta_format"] == {
        "agents": "array",
        "messages": "array",
    }
    assert [u["user_id"] for u in state.body["users"]] == ["@admin:matrix.test", "@letta:matrix.test"]


async def test_fault_with_documented_status_and_default_body(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    url = f"{matrix_mock.url}/_matrix/client/v3/createRoom"
    installed = await call(
        http,
        "POST",
        f"{matrix_mock.url}/_mock/faults",
        json_body={"operation": "createRoom", "status": 500, "times": 2, "after": 1},
        headers=matrix_mock.control_headers,
    )
    assert installed.status == 201
    statuses = [(await call(http, "POST", url, token=token, json_body={})).status for _ in range(4)]
    assert statuses == [200, 500, 500, 200]
    faults = await call(http, "GET", f"{matrix_mock.url}/_mock/faults", headers=matrix_mock.control_headers)
    assert faults.body[0]["fired"] == 2
    assert faults.body[0]["remaining"] == 0
    faulted = matrix_mock.journal("createRoom")[1]
    assert faulted.fault == installed.body["id"]
    assert faulted.response_body == {"errcode": "M_UNKNOWN", "error": "Internal server error"}


async def test_rate_limit_fault(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    matrix_mock.inject("login", rate_limit={"retry_after_ms": 1500})
    answer = await call(
        http, "POST", f"{matrix_mock.url}/_matrix/client/v3/login",
        json_body={"type": "m.login.password", "user": "admin", "password": "admin_password"},
    )  # fmt: skip
    assert answer.status == 429
    assert answer.body == {
        "errcode": "M_LIMIT_EXCEEDED",
        "error": "Too Many Requests",
        "retry_after_ms": 1500,
    }
    assert answer.headers["Retry-After"] == "2"


async def test_fault_body_must_match_the_contract(matrix_mock: MatrixMock, letta_mock: LettaMock) -> None:
    with pytest.raises(ControlError, match="not documented"):
        matrix_mock.inject("createRoom", status=418)
    with pytest.raises(ControlError, match="breaks the contract"):
        matrix_mock.inject("createRoom", status=400, body={"errcode": "M_NOT_AN_ERRCODE_HERE"})
    with pytest.raises(ControlError, match="neither"):
        matrix_mock.inject("noSuchOperation", status=500)
    custom = letta_mock.inject("listAgents", status=200, body={"data": [], "cursor": None})
    assert custom.has_body


async def test_drop_and_latency_faults(http: aiohttp.ClientSession, letta_mock: LettaMock) -> None:
    url = f"{letta_mock.url}/v1/agents/"
    # aiohttp retries an idempotent request once after a dropped connection (RFC 9112 §9.3.1), so one drop
    # goes unnoticed by such clients and two are needed to make the failure visible.
    letta_mock.inject("listAgents", drop_connection=True, times=1)
    assert (await call(http, "GET", url, token=letta_mock.token)).status == 200
    letta_mock.inject("listAgents", drop_connection=True, times=2)
    with pytest.raises(aiohttp.ClientError):
        await call(http, "GET", url, token=letta_mock.token)
    letta_mock.inject(path="^/v1/agents/$", latency_ms=150)
    started = time.monotonic()
    answer = await call(http, "GET", url, token=letta_mock.token)
    assert answer.status == 200  # a latency-only fault lets the real handler answer
    assert time.monotonic() - started >= 0.15
    assert [e.status for e in letta_mock.journal("listAgents")] == [0, 200, 0, 0, 200]


async def test_path_fault_skips_operations_that_do_not_document_its_status(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    letta_mock.inject(path="^/v1/", status=404, times=0)
    health = await call(http, "GET", f"{letta_mock.url}/v1/health/")
    assert health.status == 200  # healthCheck documents no 404
    agent = await call(
        http,
        "GET",
        f"{letta_mock.url}/v1/agents/agent-00000000-0000-4000-8000-000000000001",
        token=letta_mock.token,
    )
    assert agent.status == 404


async def test_a_request_still_running_at_a_reset_leaves_the_new_world_alone(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, letta_mock: LettaMock
) -> None:
    """A slow answer whose test has ended (its client gave up, the next test reset the world) neither
    reaches a handler of the new world nor lands in its journal."""
    token = matrix_mock.world.matrix.login(user="admin", password="admin_password")["access_token"]
    fault = matrix_mock.inject("createRoom", latency_ms=2_000)
    create = asyncio.ensure_future(
        call(http, "POST", f"{matrix_mock.url}/_matrix/client/v3/createRoom", token=token, json_body={})
    )
    agent = letta_mock.add_agent("slow")
    letta_mock.script(agent.id, {"delay_ms": 300, "messages": [{"type": "assistant", "text": "late"}]})
    hello = {"messages": [{"role": "user", "content": "hello"}]}
    ask = asyncio.ensure_future(
        call(
            http,
            "POST",
            f"{letta_mock.url}/v1/agents/{agent.id}/messages",
            token=letta_mock.token,
            json_body=hello,
        )
    )
    async with asyncio.timeout(5):
        # Both requests are inside the mock: the fault has fired, the scripted turn has begun.
        while fault.fired == 0 or letta_mock.world.letta.agents[agent.id].scripts:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    matrix_mock.world.reset()
    async with asyncio.timeout(5):
        with pytest.raises(aiohttp.ClientError):
            await create  # its world is gone: the connection is dropped
        assert (await ask).status == 200  # answered by the old world's store
    assert matrix_mock.journal() == []
    assert matrix_mock.snapshot()["rooms"] == []
