"""The Letta mock over real HTTP: auth, redirects, both list formats, cursor pagination, messages."""

from __future__ import annotations

import aiohttp
import pytest

from mockgen.pytest_plugin import LettaMock
from tests.support import call


async def _all_agents(http: aiohttp.ClientSession, letta: LettaMock, limit: int) -> tuple[list[str], int]:
    """Page through /v1/agents/ as a client must: bare array or envelope, `after` cursors."""
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": str(limit), **({"after": after} if after else {})}
        answer = await call(http, "GET", f"{letta.url}/v1/agents/", token=letta.token, params=params)
        assert answer.status == 200
        pages += 1
        page = answer.body["data"] if isinstance(answer.body, dict) else answer.body
        if not page:
            return seen, pages
        seen.extend(agent["id"] for agent in page)
        after = answer.body.get("cursor") if isinstance(answer.body, dict) else page[-1]["id"]
        if after is None:
            return seen, pages


@pytest.mark.parametrize("count", [0, 1, 100, 101, 250])
@pytest.mark.parametrize("fmt", ["array", "envelope"])
async def test_pagination_returns_every_agent_once(
    http: aiohttp.ClientSession, letta_mock: LettaMock, count: int, fmt: str
) -> None:
    letta_mock.set_format(agents=fmt)
    created = [agent.id for agent in letta_mock.add_agents(count)]
    seen, pages = await _all_agents(http, letta_mock, limit=50)
    assert seen == list(reversed(created))  # newest first
    # The envelope says when the last page was reached; a bare array needs one more, empty, page.
    full_pages = -(-count // 50)
    assert pages == (max(1, full_pages) if fmt == "envelope" else full_pages + 1)


@pytest.mark.mock_lenient
async def test_auth_is_checked_before_routing_and_redirects(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    for path in ("/v1/agents/", "/v1/agents", "/v1/no-such-route"):
        answer = await call(http, "GET", f"{letta_mock.url}{path}")
        assert (answer.status, answer.body) == (401, {"detail": "Unauthorized"})
    wrong = await call(http, "GET", f"{letta_mock.url}/v1/agents/", token="wrong")
    assert wrong.status == 401
    scheme = await call(
        http, "GET", f"{letta_mock.url}/v1/agents/", headers={"Authorization": f"Token {letta_mock.token}"}
    )
    assert scheme.status == 401
    health = await call(http, "GET", f"{letta_mock.url}/v1/health/")
    assert health.body == {"version": "0.11.7", "status": "ok"}
    redirect = await call(
        http, "GET", f"{letta_mock.url}/v1/agents", token=letta_mock.token, allow_redirects=False
    )
    assert redirect.status == 307
    assert redirect.headers["Location"].endswith("/v1/agents/")
    followed = await call(http, "GET", f"{letta_mock.url}/v1/agents", token=letta_mock.token)
    assert (followed.status, followed.body) == (200, [])
    missing = await call(http, "GET", f"{letta_mock.url}/v1/no-such-route", token=letta_mock.token)
    assert (missing.status, missing.body) == (404, {"detail": "Not Found"})


@pytest.mark.mock_lenient
@pytest.mark.mock_config(letta_token=None)
async def test_an_open_letta_answers_any_token_or_none(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    """As Letta 0.11.7 without LETTA_SERVER_SECURE (probed: no header, `Bearer wrong`, `garbage`, a wrong
    X-BARE-PASSWORD all 200; an unknown agent 404, an unknown path 404)."""
    letta_mock.add_agents(1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "garbage"}):
        answer = await call(http, "GET", f"{letta_mock.url}/v1/agents/", headers=headers)
        assert (answer.status, len(answer.body)) == (200, 1)
    missing = await call(http, "GET", f"{letta_mock.url}/v1/no-such-route")
    assert (missing.status, missing.body) == (404, {"detail": "Not Found"})
    unknown = "agent-00000000-0000-4000-8000-000000000000"
    absent = await call(http, "GET", f"{letta_mock.url}/v1/agents/{unknown}")
    assert (absent.status, absent.body) == (404, {"detail": f"Agent with ID {unknown} not found"})


async def test_cursors_and_orders(http: aiohttp.ClientSession, letta_mock: LettaMock) -> None:
    one, two, three = (agent.id for agent in letta_mock.add_agents(3))
    url = f"{letta_mock.url}/v1/agents/"

    async def ids(**params: str) -> list[str]:
        answer = await call(http, "GET", url, token=letta_mock.token, params=params)
        return [agent["id"] for agent in answer.body]

    assert await ids() == [three, two, one]
    assert await ids(ascending="true") == [one, two, three]
    assert await ids(after=three, limit="1") == [two]
    assert await ids(after=one) == []
    assert await ids(before=one) == [three, two]
    assert await ids(after="agent-00000000-0000-4000-8000-000000000000") == [three, two, one]
    assert await ids(limit="0") == await ids(limit="-1") == [three, two, one]
    assert await ids(order="asc") == [three, two, one]  # 0.11.7 ignores `order`


@pytest.mark.mock_lenient
async def test_query_violations_answer_fastapi_422(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    answer = await call(
        http, "GET", f"{letta_mock.url}/v1/agents/", token=letta_mock.token, params={"limit": "abc"}
    )
    assert answer.status == 422
    assert answer.body == {
        "detail": [
            {
                "type": "int_parsing",
                "loc": ["query", "limit"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "abc",
            }
        ]
    }
    [entry] = letta_mock.journal("listAgents")
    assert [v.location for v in entry.violations] == ["query parameter 'limit'"]


@pytest.mark.mock_lenient
async def test_agent_lookup_errors(http: aiohttp.ClientSession, letta_mock: LettaMock) -> None:
    agent = letta_mock.add_agent("solo")
    url = f"{letta_mock.url}/v1/agents"
    found = await call(http, "GET", f"{url}/{agent.id}", token=letta_mock.token)
    assert (found.body["id"], found.body["name"]) == (agent.id, "solo")
    assert found.body["created_at"][10] == "T"
    assert len(found.body["created_at"]) == 19
    ghost = "agent-00000000-0000-4000-8000-000000000000"
    missing = await call(http, "GET", f"{url}/{ghost}", token=letta_mock.token)
    assert missing.status == 404
    assert missing.body == {"detail": f"Agent with ID {ghost} not found"}
    malformed = await call(http, "GET", f"{url}/not-an-id", token=letta_mock.token)
    assert malformed.status == 400
    assert malformed.body == {"detail": "agent_id not-an-id is not in the valid format 'agent-<uuid4>'"}
    # Only GET checks the format; the messages route looks the id up and answers 404 (probe LD09m).
    unchecked = await call(http, "GET", f"{url}/not-an-id/messages", token=letta_mock.token)
    assert (unchecked.status, unchecked.body) == (404, {"detail": "Agent with ID not-an-id not found"})


@pytest.mark.parametrize("fmt", ["array", "items"])
async def test_messages_in_both_formats(http: aiohttp.ClientSession, letta_mock: LettaMock, fmt: str) -> None:
    letta_mock.set_format(messages=fmt)
    agent = letta_mock.add_agent("talker")
    answer = await call(
        http, "GET", f"{letta_mock.url}/v1/agents/{agent.id}/messages", token=letta_mock.token
    )
    messages = answer.body["items"] if fmt == "items" else answer.body
    # Letta 0.11.7 hides the greeting's send_message return beside its call
    assert [m["message_type"] for m in messages] == [
        "system_message", "reasoning_message", "assistant_message", "user_message",
    ]  # fmt: skip
    last_two = await call(
        http,
        "GET",
        f"{letta_mock.url}/v1/agents/{agent.id}/messages",
        token=letta_mock.token,
        params={"limit": "2"},
    )
    tail = last_two.body["items"] if fmt == "items" else last_two.body
    # two rows: the greeting's return, alone on the page so listed, and the login notice
    assert [m["message_type"] for m in tail] == ["tool_return_message", "user_message"]
    assert tail[1]["id"] == messages[-1]["id"]


async def test_create_rename_delete(http: aiohttp.ClientSession, letta_mock: LettaMock) -> None:
    url = f"{letta_mock.url}/v1/agents/"
    created = await call(
        http, "POST", url, token=letta_mock.token,
        json_body={"name": "new", "model": "letta/letta-free", "embedding": "letta/letta-free"},
    )  # fmt: skip
    assert created.status == 200
    agent_id = created.body["id"]
    no_model = await call(http, "POST", url, token=letta_mock.token, json_body={"name": "x"})
    assert no_model.status == 500
    assert no_model.body == {"detail": "Must specify either model or llm_config in request"}
    renamed = await call(
        http, "PATCH", f"{url}{agent_id}", token=letta_mock.token, json_body={"name": "renamed"}
    )
    assert renamed.body["name"] == "renamed"
    deleted = await call(http, "DELETE", f"{url}{agent_id}", token=letta_mock.token)
    assert deleted.body == {"message": f"Agent id={agent_id} successfully deleted"}
    assert (await call(http, "DELETE", f"{url}{agent_id}", token=letta_mock.token)).status == 404
