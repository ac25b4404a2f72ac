"""The official letta-client (1.12.1) against the mock's message path, as Letta 0.11.7 and 0.16.8."""

from __future__ import annotations

import json
import warnings

import pytest
from letta_client import Letta, UnprocessableEntityError
from letta_client.types.message_create_param import MessageCreateParam

from mockgen.pytest_plugin import LettaMock

HELLO: list[MessageCreateParam] = [{"role": "user", "content": "hello"}]
MATRIX_CALL = {
    "messages": [
        {
            "type": "tool_call",
            "name": "matrix_agent_message",
            "arguments": {"room_id": "!r:matrix.test", "text": "hi"},
            "tool_call_id": "call_m1",
        },
        {
            "type": "tool_return",
            "name": "matrix_agent_message",
            "tool_return": "sent",
            "tool_call_id": "call_m1",
        },
        {"type": "assistant", "text": "Told them."},
    ]
}


def _client(letta: LettaMock) -> Letta:
    return Letta(base_url=letta.url, api_key=letta.token, timeout=5.0, max_retries=0)


def test_create_stream_and_list(letta: LettaMock) -> None:
    agent = letta.add_agent("client")
    client = _client(letta)
    answer = client.agents.messages.create(agent.id, messages=HELLO)
    assert answer.stop_reason.stop_reason == "end_turn"
    assert answer.messages[-1].message_type == "assistant_message"
    assert answer.messages[-1].content == "echo: hello"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 1.12.1 deprecates .stream in favour of create
        chunks = list(client.agents.messages.stream(agent.id, messages=HELLO, stream_tokens=True))
    kinds = [chunk.message_type for chunk in chunks]
    assert kinds[-2:] == ["stop_reason", "usage_statistics"]
    assert ("ping" in kinds) == (letta.version == "0.16.8")
    text = "".join(str(c.content) for c in chunks if c.message_type == "assistant_message")
    assert text == "echo: hello"
    listed = client.agents.messages.list(agent.id, limit=100).items
    assert [m.message_type for m in listed][-1] == "assistant_message"
    assert listed[-1].id == [c for c in chunks if c.message_type == "assistant_message"][-1].id


def test_scripted_matrix_tool_call_survives_the_client(letta: LettaMock) -> None:
    agent = letta.add_agent("tools")
    letta.script(agent.id, MATRIX_CALL, MATRIX_CALL)
    client = _client(letta)
    answer = client.agents.messages.create(agent.id, messages=HELLO)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        streamed = list(client.agents.messages.stream(agent.id, messages=HELLO))
    for messages in (answer.messages, streamed):
        call = next(m for m in messages if m.message_type == "tool_call_message").tool_call
        assert call.name == "matrix_agent_message"
        assert call.tool_call_id == "call_m1"
        heartbeat = {"request_heartbeat": True} if letta.version == "0.11.7" else {}  # another step follows
        assert json.loads(call.arguments or "") == {"room_id": "!r:matrix.test", "text": "hi", **heartbeat}


@pytest.mark.mock_lenient
def test_a_wrong_body_is_a_contract_violation(letta: LettaMock) -> None:
    agent = letta.add_agent("wrong")
    client = _client(letta)
    with pytest.raises(UnprocessableEntityError):
        client.agents.messages.create(agent.id, messages=[{"role": "tool", "content": "x"}])  # type: ignore[typeddict-item]
    with pytest.raises(UnprocessableEntityError):
        client.agents.messages.create(agent.id, extra_body={"messages": None})
    found = [v for v in letta.violations() if v.side == "request"]
    assert {v.pointer for v in found} >= {"/messages/0/role", "/messages"}
