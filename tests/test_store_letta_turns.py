"""Turns as the store plays them (no HTTP): steps, stop reasons, what the answer and the history hold."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from mockgen.store.letta import LettaStore
from mockgen.store.letta_turns import Script, ScriptError, TurnRequest, Version

SEARCH: list[dict[str, Any]] = [
    {"type": "reasoning", "text": "Let me search first."},
    {"type": "tool_call", "name": "conversation_search", "arguments": {"query": "hello"}},
    {"type": "tool_return", "name": "conversation_search", "tool_return": "Showing 0 results: []"},
    {"type": "assistant", "text": "echo: hi"},
]


def _store(version: Version) -> LettaStore:
    clock = itertools.count(1_795_000_000).__next__
    return LettaStore(seed=7, clock=lambda: float(clock()), version=version)


def _hello(**fields: object) -> TurnRequest:
    return TurnRequest(inputs=[{"role": "user", "content": "hi"}], **fields)  # type: ignore[arg-type]


def test_max_steps_stops_the_turn_after_its_first_step() -> None:
    store = _store("0.11.7")
    agent = store.create("a")
    store.script(agent.id, [Script(messages=SEARCH)])
    turn = store.run_turn(agent.id, _hello(max_steps=1))
    assert turn.stop_reason == "max_steps"
    assert [m["message_type"] for m in turn.messages] == [
        "reasoning_message",
        "tool_call_message",
        "tool_return_message",
    ]
    assert turn.usage["step_count"] == 1


def test_use_assistant_message_false_shows_the_send_message_call() -> None:
    store = _store("0.11.7")
    agent = store.create("a")
    turn = store.run_turn(agent.id, _hello(use_assistant_message=False))
    reasoning, call, returned = turn.messages
    assert call["tool_call"]["name"] == "send_message"
    assert call["id"] == reasoning["id"] != returned["id"]
    assert returned["tool_return"] == "Sent message successfully."
    assert call["tool_call"]["tool_call_id"] == returned["tool_call_id"]


def test_include_return_message_types_filters_the_answer_not_the_history() -> None:
    store = _store("0.11.7")
    agent = store.create("a")
    turn = store.run_turn(agent.id, _hello(include_return_message_types=["assistant_message"]))
    assert [m["message_type"] for m in turn.messages] == ["assistant_message"]
    assert [m["message_type"] for m in store.list_messages(agent.id, limit=3)] == [
        "user_message",
        "reasoning_message",
        "assistant_message",
    ]


@pytest.mark.parametrize(("version", "echoed"), [("0.11.7", True), ("0.16.8", False)])
def test_a_system_message_is_echoed_by_0_11_7_only(version: Version, echoed: bool) -> None:
    store = _store(version)
    agent = store.create("a")
    store.run_turn(agent.id, _hello())
    turn = store.run_turn(agent.id, TurnRequest(inputs=[{"role": "system", "content": "note"}]))
    assert (turn.messages[0]["message_type"] == "system_message") is echoed
    assert turn.messages[-1]["content"] == "echo: hi"  # the fake LLM echoes the user, not the system


def test_0_16_8_keeps_the_input_with_its_run_and_first_step() -> None:
    store = _store("0.16.8")
    agent = store.create("a")
    turn = store.run_turn(agent.id, _hello())
    stored = store.list_messages(agent.id, limit=2)
    assert [m["message_type"] for m in stored] == ["user_message", "assistant_message"]
    assert stored[0]["run_id"] == turn.run_id == stored[1]["run_id"]
    assert stored[0]["step_id"] == stored[1]["step_id"]
    assert stored[0]["otid"] is not None


def test_a_failed_turn_keeps_nothing_and_the_next_turn_answers() -> None:
    store = _store("0.16.8")
    agent = store.create("a")
    before = store.list_messages(agent.id, limit=0)
    store.script(agent.id, [Script.parse({"llm_error": "429"})])
    assert store.run_turn(agent.id, _hello()).failure == "429"
    assert store.list_messages(agent.id, limit=0) == before
    assert store.run_turn(agent.id, _hello()).messages[-1]["content"] == "echo: hi"


@pytest.mark.parametrize(
    "spec",
    [{"llm_error": "418"}, {"messages": [{"type": "poem"}]}, {"surprise": 1}, {"messages": ["hi"]}],
)
def test_scripts_the_mock_cannot_play_are_refused(spec: dict[str, object]) -> None:
    with pytest.raises(ScriptError):
        Script.parse(spec)


def test_a_turn_answered_without_assistant_messages_is_listed_with_them() -> None:
    store = _store("0.11.7")
    agent = store.create("a")
    turn = store.run_turn(agent.id, _hello(use_assistant_message=False))
    assert all("_listed_as" not in m for m in turn.messages)
    listed = store.list_messages(agent.id, limit=3)
    assert [m["message_type"] for m in listed] == ["user_message", "reasoning_message", "assistant_message"]
    assert listed[-1]["id"] == turn.messages[1]["id"]
    assert listed[-1]["content"] == "echo: hi"


def test_0_16_8_streaming_tokens_from_an_llm_without_choices_ends_the_turn_saying_nothing() -> None:
    store = _store("0.16.8")
    agent = store.create("a")
    silent = TurnRequest(inputs=[{"role": "user", "content": "fakellm:no-choices"}], stream_tokens=True)
    turn = store.run_turn(agent.id, silent)
    assert (turn.failure, turn.messages, turn.stop_reason) == (None, [], "end_turn")
    assert store.list_messages(agent.id, limit=1)[0]["content"] == "fakellm:no-choices"
    failing = TurnRequest(inputs=[{"role": "user", "content": "fakellm:no-choices"}])
    assert store.run_turn(agent.id, failing).failure == "no_choices"


def _types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["message_type"] for m in messages]


def test_0_11_7_pages_count_rows_and_hide_a_send_message_return_beside_its_call() -> None:
    """Probed on real Letta 0.11.7 (the corpus's history steps): `limit` counts stored rows (a reasoning
    and its assistant message are one), and a send_message return is listed only without its call."""
    store = _store("0.11.7")
    agent = store.create("a")
    assert _types(store.list_messages(agent.id)) == [
        "system_message",
        "reasoning_message",
        "assistant_message",
        "user_message",
    ]
    assert _types(store.list_messages(agent.id, limit=2)) == ["tool_return_message", "user_message"]
    store.run_turn(agent.id, _hello())
    # rows: the user's, the reasoning+assistant one, its (hidden) send_message return
    assert _types(store.list_messages(agent.id, limit=3)) == [
        "user_message",
        "reasoning_message",
        "assistant_message",
    ]
    alone = store.list_messages(agent.id, limit=1)
    assert (_types(alone), alone[0]["tool_return"]) == (["tool_return_message"], "Sent message successfully.")
    assert all(not key.startswith("_") for m in store.list_messages(agent.id, limit=100) for key in m)


def test_a_marker_counts_only_in_the_turn_s_own_user_text() -> None:
    store = _store("0.11.7")
    agent = store.create("a")
    marked = TurnRequest(inputs=[{"role": "user", "content": "fakellm:bad-arguments"}])
    assert [m.get("content") for m in store.run_turn(agent.id, marked).messages] == [None, "unterminat"]
    # A system message alone, or no message: the last thing the user said is echoed, its marker idle.
    notice = TurnRequest(inputs=[{"role": "system", "content": "a notice"}])
    echoed = store.run_turn(agent.id, notice).messages
    assert (_types(echoed), echoed[-1]["content"]) == (
        ["system_message", "reasoning_message", "assistant_message"],
        "echo: fakellm:bad-arguments",
    )
    assert store.run_turn(agent.id, TurnRequest(inputs=[])).messages[-1]["content"] == (
        "echo: fakellm:bad-arguments"
    )


def test_a_call_marker_is_a_two_step_turn_and_a_tool_the_agent_lacks_is_refused() -> None:
    store = _store("0.11.7")
    agent = store.create("a")
    request = TurnRequest(inputs=[{"role": "user", "content": "fakellm:call=no_such_tool(a,b)"}])
    turn = store.run_turn(agent.id, request)
    assert _types(turn.messages) == [
        "reasoning_message",
        "tool_call_message",
        "tool_return_message",
        "reasoning_message",
        "assistant_message",
    ]
    reasoning, call, refused = turn.messages[:3]
    assert reasoning["reasoning"] == "I will call no_such_tool."
    echo = "echo: fakellm:call=no_such_tool(a,b)"
    assert json.loads(call["tool_call"]["arguments"]) == {"a": echo, "b": echo, "request_heartbeat": True}
    assert refused["status"] == "error"
    assert refused["tool_return"].startswith("[ToolConstraintError] Cannot call no_such_tool")
    searched = store.run_turn(
        agent.id, TurnRequest(inputs=[{"role": "user", "content": "x fakellm:call=conversation_search"}])
    )
    assert searched.messages[2]["tool_return"] == "No results found."


def test_a_played_turn_is_the_callers_copy() -> None:
    store = _store("0.11.7")
    agent = store.create("a")
    store.script(agent.id, [Script(messages=SEARCH)])
    turn = store.run_turn(agent.id, _hello())
    kept = json.dumps(store.list_messages(agent.id, limit=100))
    for message in (*turn.messages, *turn.history):
        message["content"] = "changed by the caller"
    turn.history.clear()
    assert json.dumps(store.list_messages(agent.id, limit=100)) == kept
