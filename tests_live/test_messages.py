"""Real Letta 0.11.7 chatting offline through the project's loopback fake LLM (`live.fakellm`): a turn sent
and streamed, what Letta asked the LLM, the history after a turn and after a failed one, the LLM's
failures as Letta answers them, and the official `letta-client` against it."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import letta_client
import pytest
from letta_client import Letta as LettaClient

from contracts.harness.sse import DONE, broken_rules, parse_events, summary
from letta_matrix_reference.live.letta import create_agent
from tests_live.conftest import Letta

TIMEOUT = aiohttp.ClientTimeout(total=60)
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture
async def agent(letta: Letta) -> AsyncIterator[str]:
    """A fresh agent wired to the fake LLM, deleted afterwards."""
    made = await create_agent(letta.info, f"chat-{secrets.token_hex(4)}", llm_url=letta.llm.url)
    yield str(made["id"])
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.delete(f"{letta.url}/v1/agents/{made['id']}", headers=letta.info.headers) as answer,
    ):
        assert answer.status == 200


async def _post(letta: Letta, path: str, body: Any) -> tuple[int, str, str]:
    """(status, content type, body text) of a POST to Letta."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.post(f"{letta.url}{path}", json=body, headers=letta.info.headers) as answer,
    ):
        return answer.status, answer.headers.get("Content-Type", ""), await answer.text()


async def _history(letta: Letta, agent: str, limit: int = 1000) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(
            f"{letta.url}/v1/agents/{agent}/messages",
            params={"limit": str(limit)},
            headers=letta.info.headers,
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
        found: list[dict[str, Any]] = await answer.json()
        return found


def _say(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_a_turn_answers_the_echo_as_reasoning_and_assistant_message(letta: Letta, agent: str) -> None:
    asked = len(letta.llm.requests)
    status, content_type, text = await _post(letta, f"/v1/agents/{agent}/messages", _say("hello there"))
    assert (status, content_type) == (200, "application/json"), text
    body = json.loads(text)
    assert sorted(body) == ["messages", "stop_reason", "usage"]
    reasoning, assistant = body["messages"]
    assert (reasoning["message_type"], assistant["message_type"]) == (
        "reasoning_message",
        "assistant_message",
    )
    assert reasoning["reasoning"] == "The user said 'hello there'; I will echo it."
    assert assistant["content"] == "echo: hello there"
    # One stored message, shown twice: the same id and step, otids from the id's uuid.
    assert reasoning["id"] == assistant["id"]
    assert re.fullmatch(rf"message-{_UUID}", reasoning["id"])
    assert reasoning["step_id"] == assistant["step_id"]
    assert broken_rules(body["messages"]) == []
    assert [reasoning["otid"][-2:], assistant["otid"][-2:]] == [
        f"{int(reasoning['id'][-2:], 16) & 0x80 | index:02x}" for index in (0, 1)
    ]
    assert body["stop_reason"] == {"message_type": "stop_reason", "stop_reason": "end_turn"}
    assert body["usage"]["step_count"] == 1
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )

    # What Letta 0.11.7 asked the LLM: one call, a tool required, `thinking` first in every tool.
    (request,) = list(letta.llm.requests)[asked:]
    assert request["tool_choice"] == "required"
    assert "stream" not in request
    tools = {tool["function"]["name"]: tool["function"] for tool in request["tools"]}
    assert "send_message" in tools
    for tool in tools.values():
        assert next(iter(tool["parameters"]["properties"])) == "thinking"
        assert "thinking" in tool["parameters"]["required"]
    assert request["messages"][-1] == {"role": "user", "content": "hello there"}


async def test_the_stream_carries_the_same_turn_as_events_ending_in_done(letta: Letta, agent: str) -> None:
    status, content_type, text = await _post(letta, f"/v1/agents/{agent}/messages/stream", _say("hi stream"))
    assert (status, content_type) == (200, "text/event-stream; charset=utf-8"), text
    assert text.startswith("data: {")
    assert text.endswith("data: [DONE]\n\n")
    assert "\nevent:" not in text  # data lines only on success
    assert "\nid:" not in text
    events = parse_events(text)
    assert summary(events) == [
        "reasoning_message",
        "assistant_message",
        "stop_reason:end_turn",
        "usage_statistics",
        DONE,
    ]
    assert events[1].data["content"] == "echo: hi stream"
    assert broken_rules([event.data for event in events]) == []


async def test_streamed_tokens_are_fragments_of_one_message(letta: Letta, agent: str) -> None:
    asked = len(letta.llm.requests)
    body = {**_say("hello tokens"), "stream_tokens": True}
    status, _, text = await _post(letta, f"/v1/agents/{agent}/messages/stream", body)
    assert status == 200, text
    events = parse_events(text)
    assert summary(events) == [
        "reasoning_message+",
        "assistant_message+",
        "stop_reason:end_turn",
        "usage_statistics",
        DONE,
    ]
    fragments = [event.data for event in events if event.data not in (DONE,) and "id" in event.data]
    assert len({fragment["id"] for fragment in fragments}) == 1
    assert {fragment["step_id"] for fragment in fragments} == {None}
    assistant = "".join(f["content"] for f in fragments if f["message_type"] == "assistant_message")
    reasoning = "".join(f["reasoning"] for f in fragments if f["message_type"] == "reasoning_message")
    assert assistant == "echo: hello tokens"
    assert reasoning.strip() == "The user said 'hello tokens'; I will echo it."
    # Only a token stream makes Letta stream from the LLM.
    (request,) = list(letta.llm.requests)[asked:]
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


async def test_the_history_gains_the_turn_and_nothing_from_a_failed_one(letta: Letta, agent: str) -> None:
    before = await _history(letta, agent)
    assert [m["message_type"] for m in before] == [
        "system_message",
        "reasoning_message",
        "assistant_message",
        "user_message",
    ]
    status, _, text = await _post(letta, f"/v1/agents/{agent}/messages", _say("remember me"))
    assert status == 200, text
    answered = json.loads(text)["messages"]
    after = await _history(letta, agent)
    # The system message keeps its id but is rewritten in place by the turn (its memory metadata, the tool
    # rules); every other message stays as it was.
    assert after[0]["id"] == before[0]["id"]
    assert after[0]["content"] != before[0]["content"]
    assert after[1 : len(before)] == before[1:]
    added = after[len(before) :]
    assert [m["message_type"] for m in added] == ["user_message", "reasoning_message", "assistant_message"]
    assert added[0]["content"] == "remember me"
    assert [m["id"] for m in added[1:]] == [m["id"] for m in answered]

    for path, marker in (("/messages", "fakellm:http-500"), ("/messages/stream", "fakellm:no-tool-call")):
        status, _, text = await _post(letta, f"/v1/agents/{agent}{path}", _say(marker))
        assert status == 500, text
    assert _without_system(await _history(letta, agent)) == _without_system(after)


def _without_system(history: list[dict[str, Any]]) -> list[Any]:
    return [m["id"] if m["message_type"] == "system_message" else m for m in history]


@pytest.mark.parametrize(
    ("marker", "status", "detail"),
    [
        ("fakellm:http-500", 500, "An internal server error occurred"),
        ("fakellm:http-400", 500, "An internal server error occurred"),
        ("fakellm:malformed", 500, "An internal server error occurred"),
        ("fakellm:no-choices", 400, "Unpacking inner thoughts from empty response not supported"),
        ("fakellm:no-tool-call", 400, "No tool calls found in response, model must make a tool call"),
    ],
)
async def test_an_llm_failure_is_letta_s_error(
    letta: Letta, agent: str, marker: str, status: int, detail: str
) -> None:
    got, content_type, text = await _post(letta, f"/v1/agents/{agent}/messages", _say(marker))
    assert (got, content_type, json.loads(text)) == (status, "application/json", {"detail": detail})


@pytest.mark.parametrize(
    ("marker", "tokens", "status", "stop_reason", "error"),
    [
        ("fakellm:http-500", False, 500, "error", "INTERNAL_SERVER_ERROR: OpenAI API error: Error code: 500"),
        (
            "fakellm:http-429",
            True,
            500,
            "error",
            "RATE_LIMIT_EXCEEDED: Rate limited by OpenAI: Error code: 429",
        ),
        ("fakellm:no-tool-call", False, 500, "no_tool_call", "No tool calls found in response"),
        ("fakellm:no-choices", False, 500, "invalid_llm_response", "Unpacking inner thoughts from empty"),
        # the LLM's first chunk reached Letta: the status was sent before the failure
        ("fakellm:malformed", True, 200, "error", "An exception occurred mid-stream with status code 500"),
    ],
)
async def test_an_llm_failure_in_a_stream_is_a_stop_reason_and_an_error_event(
    letta: Letta, agent: str, marker: str, tokens: bool, status: int, stop_reason: str, error: str
) -> None:
    body = {**_say(marker), "stream_tokens": tokens}
    got, content_type, text = await _post(letta, f"/v1/agents/{agent}/messages/stream", body)
    assert (got, content_type) == (status, "text/event-stream; charset=utf-8"), text
    events = parse_events(text)
    assert summary(events) == [f"stop_reason:{stop_reason}", "event error:INTERNAL_SERVER_ERROR"]
    assert events[1].event == "error"
    assert events[1].data["error"].startswith(error)
    assert sorted(events[1].data) == ["code", "error"]


async def test_a_call_to_another_tool_is_a_two_step_turn(letta: Letta, agent: str) -> None:
    text = "look it up fakellm:call=conversation_search"
    status, _, answer = await _post(letta, f"/v1/agents/{agent}/messages", _say(text))
    assert status == 200, answer
    body = json.loads(answer)
    assert [m["message_type"] for m in body["messages"]] == [
        "reasoning_message",
        "tool_call_message",
        "tool_return_message",
        "reasoning_message",
        "assistant_message",
    ]
    call, result = body["messages"][1], body["messages"][2]
    assert call["tool_call"]["name"] == "conversation_search"
    arguments = json.loads(call["tool_call"]["arguments"])
    assert "thinking" not in arguments  # Letta keeps it as the reasoning
    assert arguments["request_heartbeat"] is True
    assert (result["name"], result["status"]) == ("conversation_search", "success"), result["tool_return"]
    assert result["tool_call_id"] == call["tool_call"]["tool_call_id"]
    assert body["messages"][-1]["content"] == f"echo: {text}"
    assert body["usage"]["step_count"] == 2
    assert broken_rules(body["messages"]) == []


async def test_a_call_to_a_tool_the_agent_lacks_is_an_error_return_then_the_answer(
    letta: Letta, agent: str
) -> None:
    status, _, answer = await _post(
        letta, f"/v1/agents/{agent}/messages", _say("fakellm:call=matrix_agent_message")
    )
    assert status == 200, answer
    messages = json.loads(answer)["messages"]
    result = messages[2]
    assert (result["message_type"], result["status"]) == ("tool_return_message", "error")
    assert result["tool_return"].startswith("[ToolConstraintError] Cannot call matrix_agent_message")
    assert messages[-1]["message_type"] == "assistant_message"


# The archetype bridge's tool, as a Letta custom tool (Letta runs it in its own sandbox).
MATRIX_TOOL = '''def matrix_agent_message(agent_id: str, message: str) -> str:
    """Send a message to another agent's Matrix room.

    Args:
        agent_id (str): The agent to message.
        message (str): What to say.

    Returns:
        str: What happened.
    """
    return "sent to " + agent_id
'''


async def test_a_matrix_agent_message_call_reaches_the_client_whole_in_json_and_stream(letta: Letta) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.post(
            f"{letta.url}/v1/tools/", json={"source_code": MATRIX_TOOL}, headers=letta.info.headers
        ) as answer:
            assert answer.status == 200, await answer.text()
            tool = await answer.json()
        made = await create_agent(
            letta.info,
            f"bridge-{secrets.token_hex(4)}",
            llm_url=letta.llm.url,
            extra={"tool_ids": [tool["id"]]},
        )
        try:
            text = "tell bob fakellm:call=matrix_agent_message(agent_id,message)"
            status, _, answer_text = await _post(letta, f"/v1/agents/{made['id']}/messages", _say(text))
            assert status == 200, answer_text
            messages = json.loads(answer_text)["messages"]
            status, _, stream_text = await _post(
                letta, f"/v1/agents/{made['id']}/messages/stream", _say(text)
            )
            assert status == 200, stream_text
            streamed = [event.data for event in parse_events(stream_text)]
        finally:
            for path in (f"/v1/agents/{made['id']}", f"/v1/tools/{tool['id']}"):
                async with session.delete(f"{letta.url}{path}", headers=letta.info.headers) as answer:
                    assert answer.status == 200, await answer.text()

    turn = [
        "reasoning_message",
        "tool_call_message",
        "tool_return_message",
        "reasoning_message",
        "assistant_message",
    ]
    assert [m["message_type"] for m in messages] == turn
    assert [m.get("message_type") if isinstance(m, dict) else m for m in streamed] == [
        *turn,
        "stop_reason",
        "usage_statistics",
        DONE,
    ]
    for turn_messages in (messages, streamed):
        call, result = turn_messages[1], turn_messages[2]
        assert call["tool_call"]["name"] == "matrix_agent_message"
        assert json.loads(call["tool_call"]["arguments"]) == {
            "agent_id": f"echo: {text}",
            "message": f"echo: {text}",
            "request_heartbeat": True,
        }
        assert (result["status"], result["tool_return"]) == ("success", f"sent to echo: {text}")
        assert result["tool_call_id"] == call["tool_call"]["tool_call_id"]
        assert broken_rules(turn_messages) == []


# The official client (sync, as most bots use it), with no proxy from the environment and no retries: a
# retried 500 would send the turn three times.
def _client(letta: Letta) -> LettaClient:
    http = httpx.Client(trust_env=False, timeout=60)
    return LettaClient(base_url=letta.url, api_key=letta.token, http_client=http, max_retries=0)


@pytest.fixture
def client(letta: Letta) -> Iterator[LettaClient]:
    with _client(letta) as made:
        yield made


def _agent_for_client(letta: Letta) -> str:
    made = asyncio.run(create_agent(letta.info, f"client-{secrets.token_hex(4)}", llm_url=letta.llm.url))
    return str(made["id"])


def test_letta_client_creates_streams_and_lists_messages(letta: Letta, client: LettaClient) -> None:
    agent = _agent_for_client(letta)
    try:
        answer = client.agents.messages.create(agent, messages=[{"role": "user", "content": "hi client"}])
        assert [type(m).__name__ for m in answer.messages] == ["ReasoningMessage", "AssistantMessage"]
        assert answer.messages[1].content == "echo: hi client"  # type: ignore[union-attr]
        assert answer.stop_reason.stop_reason == "end_turn"
        assert answer.usage.step_count == 1

        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", DeprecationWarning
            )  # deprecated in 1.12.1, still what 0.11.7 serves
            streamed = list(
                client.agents.messages.stream(agent, messages=[{"role": "user", "content": "hi stream"}])
            )
        assert [item.message_type for item in streamed] == [
            "reasoning_message",
            "assistant_message",
            "stop_reason",
            "usage_statistics",
        ]
        assert streamed[1].content == "echo: hi stream"  # type: ignore[union-attr]

        page = client.agents.messages.list(agent, limit=6)
        assert [m.message_type for m in page.items] == [
            "user_message",
            "reasoning_message",
            "assistant_message",
            "user_message",
            "reasoning_message",
            "assistant_message",
        ]
        assert page.items[-1].id == streamed[1].id  # type: ignore[union-attr]
    finally:
        client.agents.delete(agent)


def test_letta_client_raises_letta_s_errors(letta: Letta, client: LettaClient) -> None:
    agent = _agent_for_client(letta)
    hello = [{"role": "user", "content": "hello"}]
    try:
        with pytest.raises(letta_client.NotFoundError):
            client.agents.messages.create("agent-00000000-0000-4000-8000-000000000000", messages=hello)  # type: ignore[arg-type]
        with pytest.raises(letta_client.BadRequestError, match="Messages must not be empty"):
            client.agents.messages.create(agent, messages=[])
        with pytest.raises(letta_client.UnprocessableEntityError):
            client.agents.messages.create(agent, messages=[{"role": "tool", "content": "x"}])  # type: ignore[typeddict-item]
        # Letta drops the connection after an exception's 500 (test_an_exception_s_500_closes_the_connection),
        # and without retries the next call on it may fail: each 500 here gets a client of its own.
        with _client(letta) as once, pytest.raises(letta_client.InternalServerError):
            once.agents.messages.create(agent, messages=[{"role": "user", "content": "fakellm:http-500"}])
        # The HTTP status of a stream is known before its first event: the call itself raises.
        with _client(letta) as once, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(letta_client.InternalServerError) as raised:
                once.agents.messages.stream(agent, messages=[{"role": "user", "content": "fakellm:http-500"}])
        assert raised.value.status_code == 500
        assert "event: error" in str(raised.value.body)
    finally:
        client.agents.delete(agent)


async def test_an_exception_s_500_closes_the_connection(letta: Letta, agent: str) -> None:
    """Letta's uvicorn closes a keep-alive connection after a 500 raised by the app, without a `Connection:
    close` header: a client that sends its next request on it is reset (why the corpus runner takes a
    connection per step)."""
    host, port = letta.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 10)
    try:
        body = json.dumps(_say("fakellm:http-500")).encode()
        head = (
            f"POST /v1/agents/{agent}/messages HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {letta.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert answer.startswith(b"HTTP/1.1 500 ")
        assert b"connection:" not in answer.lower()
        length = int(re.search(rb"content-length: (\d+)", answer.lower()).group(1))  # type: ignore[union-attr]
        assert json.loads(await reader.readexactly(length)) == {"detail": "An internal server error occurred"}
        assert await asyncio.wait_for(reader.read(1), 10) == b""  # closed by the server
    finally:
        writer.close()
