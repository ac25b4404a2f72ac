"""The LLM an agent of the mock talks to by default: the project's loopback fake LLM
(`letta_matrix_reference.live.fakellm`), which `make live` wires real Letta to, so one request means the same
to the mock and to real Letta. It echoes the user's text (`echo: <text>`, with the reasoning `The user said
'<text>'; I will echo it.` on 0.11.7), and a marker in the text makes the turn's first LLM call misbehave:

`fakellm:http-500`, `fakellm:http-429`, `fakellm:http-400` (an HTTP error), `fakellm:malformed` (a body that
is not JSON), `fakellm:no-choices`, `fakellm:no-tool-call` (text without a tool call: a failure for 0.11.7's
agent, the reply for 0.16.8's), `fakellm:bad-arguments` (send_message with arguments cut short, which 0.11.7
repairs), `fakellm:call=TOOL` or `fakellm:call=TOOL(a,b)` (a call of TOOL, its first string parameter or
the named ones given the echo; then the echo). A misspelt mode is the fake LLM's 400.

A marker counts only in a turn's own user text: a turn without one (only a system message, or the stream
route's `messages: []`) echoes the last thing the user said, as the fake LLM does on a step that does not
start with the user's text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contracts.fakellm import MARKER, echo, thinking

# Marker mode -> the LLM failure it stands for (mockgen.store.letta_turns.LLM_FAILURES).
FAILURES = {
    "http-500": "500",
    "http-429": "429",
    "http-400": "400",
    "malformed": "malformed",
    "no-choices": "no_choices",
    "no-tool-call": "no_tool_call",
}
MODES = ("echo", *FAILURES, "bad-arguments", "call")
TOOLS = {
    "0.11.7": ["memory_insert", "memory_replace", "conversation_search", "send_message"],
    "0.16.8": ["conversation_search", "memory_insert", "memory_replace"],
}
# The first string parameter (after `thinking`) of each default tool: what `call=TOOL` fills.
FIRST_STRING = {
    "conversation_search": "query",
    "memory_insert": "label",
    "memory_replace": "label",
    "send_message": "message",
}
NO_RESULTS = "No results found."


@dataclass(frozen=True)
class Ask:
    """What a turn asks the fake LLM: the user's text and the marker in it (on the turn's own text only)."""

    text: str
    mode: str = "echo"
    tool: str | None = None
    named: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str, *, own: bool) -> Ask:
        found = MARKER.search(text) if own else None
        if found is None:
            return cls(text)
        named = tuple(filter(None, (found.group(3) or "").split(",")))
        return cls(text, found.group(1), found.group(2), named)

    @property
    def echo(self) -> str:
        return echo(self.text)

    @property
    def thinking(self) -> str:
        return thinking(self.text)


def failure(ask: Ask) -> str | None:
    """The LLM failure the marker asks for, if any (a mode the fake LLM does not know is its 400)."""
    if ask.mode not in MODES:
        return "400"
    if ask.mode == "call" and not ask.tool:
        return None
    return FAILURES.get(ask.mode)


def answer(version: str, ask: Ask, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the fake LLM makes the agent say, as script items (see letta_turns.Script)."""
    echo: list[dict[str, Any]] = [{"type": "assistant", "text": ask.echo}]
    if version == "0.11.7":
        echo.insert(0, {"type": "reasoning", "text": ask.thinking})
    if ask.mode == "bad-arguments" and version == "0.11.7":
        # `{"thinking": "oops", "message": "unterminated`, as Letta 0.11.7 repairs it.
        return [{"type": "reasoning", "text": "oops"}, {"type": "assistant", "text": "unterminat"}]
    if ask.mode != "call" or not ask.tool or ask.tool == "send_message":
        return echo
    tool = ask.tool
    arguments = dict.fromkeys(ask.named or (FIRST_STRING.get(tool, "message"),), ask.echo)
    first: list[dict[str, Any]] = [
        {"type": "tool_call", "name": tool, "arguments": arguments},
        {"type": "tool_return", "name": tool, **_run(version, tool, arguments, history)},
    ]
    if version == "0.11.7":
        first.insert(0, {"type": "reasoning", "text": f"I will call {tool}."})
    return [*first, *echo]


def _run(version: str, tool: str, arguments: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """A called tool's return: a search of the history, or Letta's refusal of a tool the agent lacks; the
    memory tools, which the mock does not keep, refuse too."""
    if tool == "conversation_search":
        return {"tool_return": _search(version, str(arguments.get("query", "")), history)}
    if tool not in TOOLS[version]:
        refusal = f"[ToolConstraintError] Cannot call {tool}, valid tools include: {TOOLS[version]}."
        return {"tool_return": refusal, "status": "error"}
    return {"tool_return": f"the mock does not run {tool}", "status": "error"}


def _search(version: str, query: str, history: list[dict[str, Any]]) -> str:
    """conversation_search's return: the newest user and assistant messages holding the query (0.11.7 as
    JSON text, 0.16.8 as the repr of a dict), or that there are none."""
    found = [
        {
            "timestamp": m["date"],
            "time_ago": "0s ago",
            "role": "user" if m["message_type"] == "user_message" else "assistant",
            "relevance": {"search_mode": "sql"},
            "content": m["content"],
        }
        for m in reversed(history)
        if m["message_type"] in ("user_message", "assistant_message")
        and isinstance(m.get("content"), str)
        and query.lower() in m["content"].lower()
    ][:5]
    if not found:
        return NO_RESULTS
    if version == "0.16.8":
        return repr({"message": f"Showing {len(found)} results:", "results": found})
    return f"Showing {len(found)} results: {json.dumps(found, indent=2)}"
