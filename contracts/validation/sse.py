"""Server-sent events (`text/event-stream`) as Letta streams a turn: the framing, then each event against the
schema the contract documents for one event.

The contract describes one event as `{"event": <type>, "data": <data>}`: `event` is the `event:` field
(`message` when there is none, as the SSE standard reads it), `data` the event's data parsed as JSON, or the
string `[DONE]`, Letta's terminator. Framing: only `event:` and `data:` fields, every event ended by a blank
line, nothing after `[DONE]`, and the stream ends with `[DONE]` or an `error` event (anything else means it
was cut)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.validation.fastpath import SchemaCheck
from contracts.validation.json_values import compact_json, short
from contracts.validation.violations import Violation, schema_violations

SSE_MEDIA_TYPE = "text/event-stream"
DONE = "[DONE]"
DEFAULT_EVENT = "message"
ERROR_EVENT = "error"
_FIELDS = ("event", "data")


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its type and its data (parsed JSON, or `[DONE]`)."""

    event: str
    data: Any

    @property
    def document(self) -> dict[str, Any]:
        """What the contract's event schema describes."""
        return {"event": self.event, "data": self.data}

    @property
    def terminal(self) -> bool:
        return self.data == DONE or self.event == ERROR_EVENT


def encode_event(data: Any, event: str | None = None) -> bytes:
    """One event as Letta frames it: `event: <type>` only for a type other than `message`, compact JSON."""
    text = data if data == DONE else compact_json(data)
    head = f"event: {event}\n" if event and event != DEFAULT_EVENT else ""
    return f"{head}data: {text}\n\n".encode()


def parse_stream(body: bytes) -> tuple[list[Event], list[str]]:
    """The events of a stream, and what is wrong with its framing (as "expected X, got Y" pairs' actuals)."""
    problems: list[str] = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"bytes that are not UTF-8 ({exc.reason})"]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = text.split("\n\n")
    # Every event ends with a blank line, so a whole stream splits into events and a final empty piece.
    tail = blocks.pop()
    if tail:
        problems.append(f"an event without its closing blank line: {short(tail)}")
    events: list[Event] = []
    for block in blocks:
        event, parsed = _parse_block(block, problems)
        if parsed is not None and events and events[-1].data == DONE:
            problems.append(f"an event after [DONE]: {short(block)}")
        if parsed is not None:
            events.append(Event(event, parsed[0]))
    if not events:
        problems.append("no event at all")
    elif not events[-1].terminal:
        problems.append("a stream that ends without [DONE] or an error event (cut)")
    return events, problems


def _parse_block(block: str, problems: list[str]) -> tuple[str, tuple[Any] | None]:
    event = DEFAULT_EVENT
    data_lines: list[str] = []
    for line in block.split("\n"):
        name, colon, value = line.partition(":")
        if not colon or name not in _FIELDS:
            problems.append(f"a line that is not an event: or data: field: {short(line)}")
            continue
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        else:
            data_lines.append(value)
    if not data_lines:
        problems.append(f"an event without data: {short(block)}")
        return event, None
    data = "\n".join(data_lines)
    if data == DONE:
        return event, (DONE,)
    try:
        return event, (json.loads(data),)
    except ValueError as exc:
        problems.append(f"event data that is not JSON ({short(str(exc))}): {short(data)}")
        return event, None


def check_stream(
    validator: SchemaCheck, schema: Mapping[str, Any], body: bytes, *, operation: str | None
) -> list[Violation]:
    """Every way a `text/event-stream` answer breaks the contract: its framing, then each event."""
    events, problems = parse_stream(body)
    found = [
        Violation(
            "response", operation, "response stream", "", "sse", "server-sent events as Letta frames them", p
        )
        for p in problems
    ]
    for index, event in enumerate(events):
        found.extend(
            schema_violations(
                validator,
                schema,
                event.document,
                side="response",
                operation=operation,
                location=f"response event {index}",
            )
        )
    return found
