"""The words of the project's fake LLM, shared by the loopback LLM real Letta talks to in `make live`
(`letta_matrix_reference.live.fakellm`) and the mock's default LLM (`mockgen.store.letta_llm`), so that one
request means the same to both: its answer and reasoning, the marker a user's text may hold
(`fakellm:MODE`, `fakellm:call=TOOL(a,b)`), and Letta's own notices, which arrive as role-user messages but
are not the user's words (the differential reads them too: `contracts.harness.sse`)."""

from __future__ import annotations

import json
import re

MARKER = re.compile(r"fakellm:([a-z0-9-]+)(?:=([A-Za-z0-9_]+)(?:\(([A-Za-z0-9_,]*)\))?)?")
LETTA_NOTICES = ("heartbeat", "login", "system_alert")


def echo(text: str) -> str:
    """What the fake LLM answers to the user's `text`."""
    return f"echo: {text}"


def thinking(text: str) -> str:
    """The reasoning it gives with that answer (0.11.7's `send_message` carries it)."""
    return f"The user said '{text}'; I will echo it."


def letta_notice(text: str) -> str | None:
    """The type of a Letta notice (`{"type": "heartbeat", ...}`), or None for a user's own text."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if kind in LETTA_NOTICES else None
