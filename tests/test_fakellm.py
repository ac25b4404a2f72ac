"""The loopback fake LLM real Letta chats through in `make live` (`live.fakellm`): what it answers a Letta
0.11.7 agent's requests, each misbehaviour its markers ask for, its OpenAI-format stream, and where it
listens."""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from letta_matrix_reference.live.fakellm import EMBEDDING_DIM, FakeLLM
from letta_matrix_reference.live.net import LOOPBACK, http_request

TIMEOUT = aiohttp.ClientTimeout(total=10)


def _tool(name: str, *parameters: str) -> dict[str, Any]:
    properties = {"thinking": {"type": "string"}} | {p: {"type": "string"} for p in parameters}
    properties["request_heartbeat"] = {"type": "boolean"}
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": properties}},
    }


# What Letta 0.11.7 sends a memgpt_v2_agent's LLM: every tool with `thinking` first, a call required.
TOOLS = [_tool("send_message", "message"), _tool("conversation_search", "query", "start_date")]


def _turn(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    system = {"role": "system", "content": "be brief"}
    return {
        "model": "fake-llm",
        "messages": [system, *messages],
        "tools": TOOLS,
        "tool_choice": "required",
        **extra,
    }


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


async def _chat(llm: FakeLLM, body: dict[str, Any]) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.post(f"{llm.url}/chat/completions", json=body) as answer,
    ):
        return answer.status, answer.content_type, await answer.text()


def _call(text: str) -> tuple[str, dict[str, Any]]:
    (call,) = json.loads(text)["choices"][0]["message"]["tool_calls"]
    return call["function"]["name"], json.loads(call["function"]["arguments"])


async def test_it_listens_on_loopback_and_lists_its_models(llm: FakeLLM) -> None:
    assert llm.url.startswith("http://127.0.0.1:")
    assert llm.url.endswith("/v1")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{llm.url}/models") as answer:
            assert [model["id"] for model in (await answer.json())["data"]] == ["fake-llm", "fake-embed"]
        async with session.post(f"{llm.url}/embeddings", json={"input": ["a", "b"]}) as answer:
            data = (await answer.json())["data"]
    assert [len(item["embedding"]) for item in data] == [EMBEDDING_DIM, EMBEDDING_DIM]
    assert data[0]["embedding"] != data[1]["embedding"]


async def test_a_turn_is_a_send_message_call_echoing_the_user(llm: FakeLLM) -> None:
    status, _, text = await _chat(llm, _turn(_user("hello")))
    assert status == 200
    assert _call(text) == (
        "send_message",
        {"thinking": "The user said 'hello'; I will echo it.", "message": "echo: hello"},
    )
    assert json.loads(text)["choices"][0]["finish_reason"] == "tool_calls"
    assert list(llm.requests)[-1]["messages"][-1] == _user("hello")
    # the same request, the same answer
    assert (await _chat(llm, _turn(_user("hello"))))[2] == text


async def test_without_send_message_a_turn_is_plain_text(llm: FakeLLM) -> None:
    body = {**_turn(_user("hi")), "tools": [TOOLS[1]], "tool_choice": "auto"}
    message = json.loads((await _chat(llm, body))[2])["choices"][0]["message"]
    assert (message["content"], message.get("tool_calls")) == ("echo: hi", None)


async def test_a_marker_calls_another_tool_and_the_next_step_answers(llm: FakeLLM) -> None:
    asked = _user("find it fakellm:call=conversation_search")
    name, arguments = _call((await _chat(llm, _turn(asked)))[2])
    assert name == "conversation_search"
    assert arguments == {
        "thinking": "I will call conversation_search.",
        "query": "echo: find it fakellm:call=conversation_search",
        "request_heartbeat": True,
    }
    # the tool's result and Letta's heartbeat: the marker no longer counts, the echo follows
    heartbeat = _user(json.dumps({"type": "heartbeat", "reason": "continue"}))
    tool = {"role": "tool", "tool_call_id": "c1", "content": "{}"}
    name, arguments = _call((await _chat(llm, _turn(asked, tool, heartbeat)))[2])
    assert (name, arguments["message"]) == ("send_message", f"echo: {asked['content']}")


async def test_a_marker_may_name_the_parameters_to_fill(llm: FakeLLM) -> None:
    asked = _user("fakellm:call=matrix_agent_message(agent_id,message)")
    name, arguments = _call((await _chat(llm, _turn(asked)))[2])
    assert name == "matrix_agent_message"  # not offered: Letta answers with a ToolConstraintError
    assert arguments == {
        "thinking": "I will call matrix_agent_message.",
        "agent_id": f"echo: {asked['content']}",
        "message": f"echo: {asked['content']}",
    }


@pytest.mark.parametrize(
    ("marker", "status", "check"),
    [
        ("http-500", 500, lambda body: json.loads(body)["error"]["type"] == "server_error"),
        ("http-429", 429, lambda body: json.loads(body)["error"]["type"] == "rate_limit_error"),
        ("http-400", 400, lambda body: json.loads(body)["error"]["type"] == "invalid_request_error"),
        ("malformed", 200, lambda body: body == "this is not JSON {"),
        ("no-choices", 200, lambda body: json.loads(body)["choices"] == []),
        ("no-tool-call", 200, lambda body: "tool_calls" not in json.loads(body)["choices"][0]["message"]),
        ("bad-arguments", 200, lambda body: "unterminated" in body),
    ],
)
async def test_a_marker_makes_the_first_step_misbehave(
    llm: FakeLLM, marker: str, status: int, check: Any
) -> None:
    got, _, body = await _chat(llm, _turn(_user(f"x fakellm:{marker}")))
    assert got == status
    assert check(body)


async def test_an_unknown_marker_is_refused(llm: FakeLLM) -> None:
    status, _, body = await _chat(llm, _turn(_user("fakellm:htp-500")))
    assert status == 400
    assert "unknown fakellm mode 'htp-500'" in json.loads(body)["error"]["message"]


async def test_a_stream_is_openai_chunks_ending_in_done(llm: FakeLLM) -> None:
    body = _turn(_user("hello stream"), stream=True, stream_options={"include_usage": True})
    status, content_type, text = await _chat(llm, body)
    assert (status, content_type) == (200, "text/event-stream")
    blocks = [block.removeprefix("data: ") for block in text.strip().split("\n\n")]
    assert blocks[-1] == "[DONE]"
    chunks = [json.loads(block) for block in blocks[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    deltas = [chunk["choices"][0] for chunk in chunks[:-1]]
    assert deltas[0]["delta"]["tool_calls"][0]["function"]["name"] == "send_message"
    calls = [d["delta"]["tool_calls"][0] for d in deltas if d["delta"].get("tool_calls")]
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments)["message"] == "echo: hello stream"
    assert deltas[-1]["finish_reason"] == "tool_calls"


async def test_a_malformed_stream_still_ends_in_done(llm: FakeLLM) -> None:
    status, _, text = await _chat(llm, _turn(_user("fakellm:malformed"), stream=True))
    assert status == 200
    assert text == "data: this is not JSON {\n\ndata: [DONE]\n\n"


def test_the_threaded_server_serves_and_stops() -> None:
    with FakeLLM() as llm:
        status, models = http_request("GET", f"{llm.url}/models")
        assert (status, models["object"]) == (200, "list")
        port = int(llm.base.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=1).close()


def test_python_m_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "letta_matrix_reference.live.fakellm"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10)
        assert ready, "no ready line within 10 s"
        line = json.loads(process.stdout.readline())
        assert line["kind"] == "fakellm"
        status, _ = http_request("GET", f"{line['url']}/models")
        assert status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
