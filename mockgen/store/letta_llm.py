"""The LLM an agent of the mock talks to by default: the reference loopback LLM the observations of real
Letta were made with (and `make live` wires real Letta to). It echoes the last text it was given, and words
in that text make it misbehave, so one request means the same to the mock and to real Letta:

`FAKE_LLM_500`, `FAKE_LLM_429`, `FAKE_LLM_400` (an HTTP error), `FAKE_LLM_MALFORMED` (a body that is not
JSON), `FAKE_LLM_NOCHOICES` (no choices), `FAKE_LLM_NOTOOL` (text without a tool call: a failure for 0.11.7's
agent, the reply for 0.16.8's), `FAKE_LLM_UNKNOWNTOOL` (a call of a tool the agent does not have, then the
echo), `FAKE_LLM_SEARCH` (conversation_search, then the echo), `FAKE_LLM_BADARGS` (send_message with
arguments cut short, which 0.11.7 repairs)."""

from __future__ import annotations

import json
from typing import Any

# Magic word -> the LLM failure it stands for (mockgen.store.letta_turns.LLM_FAILURES).
FAILURES = {
    "FAKE_LLM_500": "500",
    "FAKE_LLM_429": "429",
    "FAKE_LLM_400": "400",
    "FAKE_LLM_MALFORMED": "malformed",
    "FAKE_LLM_NOCHOICES": "no_choices",
    "FAKE_LLM_NOTOOL": "no_tool_call",
}
TOOLS = {
    "0.11.7": ["memory_insert", "memory_replace", "conversation_search", "send_message"],
    "0.16.8": ["conversation_search", "memory_insert", "memory_replace"],
}


def failure(text: str) -> str | None:
    """The LLM failure `text` asks for, if any."""
    return next((kind for word, kind in FAILURES.items() if word in text), None)


def answer(version: str, text: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the reference LLM answers to `text`, as script items (see letta_turns.Script)."""
    echo: list[dict[str, Any]] = [{"type": "assistant", "text": f"echo: {text}"}]
    if version == "0.11.7":
        echo.insert(0, {"type": "reasoning", "text": f"The user said '{text}'; I will echo it."})
    if "FAKE_LLM_BADARGS" in text and version == "0.11.7":
        return [{"type": "reasoning", "text": "oops"}, {"type": "assistant", "text": "unterminat"}]
    if "FAKE_LLM_UNKNOWNTOOL" in text:
        refusal = f"[ToolConstraintError] Cannot call no_such_tool, valid tools include: {TOOLS[version]}."
        first: list[dict[str, Any]] = [
            {"type": "tool_call", "name": "no_such_tool", "arguments": {"x": 1}},
            {"type": "tool_return", "name": "no_such_tool", "tool_return": refusal, "status": "error"},
        ]
        if version == "0.11.7":
            first.insert(0, {"type": "reasoning", "text": f"The user said '{text}'; I will echo it."})
        return [*first, *echo]
    if "FAKE_LLM_SEARCH" in text:
        first = [
            {"type": "tool_call", "name": "conversation_search", "arguments": {"query": "hello"}},
            {"type": "tool_return", "name": "conversation_search", "tool_return": _search(version, history)},
        ]
        if version == "0.11.7":
            first.insert(0, {"type": "reasoning", "text": "Let me search first."})
        return [*first, *echo]
    return echo


def _search(version: str, history: list[dict[str, Any]]) -> str:
    """conversation_search's return: the newest user and assistant messages (0.11.7 as JSON text, 0.16.8 as
    the repr of a dict)."""
    found = [
        {
            "timestamp": m["date"],
            "time_ago": "0s ago",
            "role": "user" if m["message_type"] == "user_message" else "assistant",
            "relevance": {"search_mode": "sql"},
            "content": m["content"],
        }
        for m in reversed(history)
        if m["message_type"] in ("user_message", "assistant_message") and isinstance(m.get("content"), str)
    ][:5]
    if version == "0.16.8":
        return repr({"message": f"Showing {len(found)} results:", "results": found})
    return f"Showing {len(found)} results: {json.dumps(found, indent=2)}"
