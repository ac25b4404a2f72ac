"""Letta's answers to a chat turn, reduced to what two servers must agree on: the events of a server-sent
event stream (or the `messages` of a LettaResponse) in order, with what differs by design between any two
runs — ids, timestamps, token fragments, usage counts — replaced by the rules they follow.

A stream is `data: <json>` events separated by blank lines, ending in `data: [DONE]`; an error is an
`event: error` line before its `data:` (Letta 0.11.7)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.fakellm import letta_notice

DONE = "[DONE]"
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_MESSAGE_ID = re.compile(rf"^message-({_UUID})$")
_STEP_ID = re.compile(rf"^step-{_UUID}$")
_OTID = re.compile(rf"^{_UUID}$")
# Letta 0.11.7 prints a message's date to the second, in UTC, as `+00:00`.
_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


@dataclass(frozen=True)
class Event:
    event: str | None  # the `event:` line, None without one
    data: Any  # the `data:` JSON, or the text when it is not JSON ([DONE])


class FramingError(ValueError):
    """A body that is not a server-sent event stream of `data:` lines."""


def parse_events(text: str) -> list[Event]:
    """The events of a stream; a block with no `data:` line, or a field Letta never sends, is refused."""
    events: list[Event] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            else:
                raise FramingError(f"a line Letta never sends: {line[:80]!r}")
        if not data:
            raise FramingError(f"an event without data: {block[:80]!r}")
        joined = "\n".join(data)
        try:
            events.append(Event(name, json.loads(joined)))
        except ValueError:
            events.append(Event(name, joined))
    return events


def _entry(event: Event) -> str:
    """One event as compared: its kind and, for a stop reason or an error, the value a client acts on."""
    if event.data == DONE:
        return DONE
    data = event.data if isinstance(event.data, dict) else {}
    kind = str(data.get("message_type", "?"))
    if kind == "stop_reason":
        kind = f"stop_reason:{data.get('stop_reason')}"
    if event.event is not None:
        return f"event {event.event}:{data.get('code', '?')}"
    return kind


def summary(events: Sequence[Event]) -> list[str]:
    """The events in order; a run of fragments of one message (`stream_tokens`) is one entry marked `+`."""
    found: list[str] = []
    previous: tuple[str, Any] | None = None
    for event in events:
        entry = _entry(event)
        key = (entry, event.data.get("id") if isinstance(event.data, dict) else None)
        if previous == key and key[1] is not None:
            found[-1] = entry + "+"
            continue
        previous = key
        found.append(entry)
    return found


def response_summary(body: dict[str, Any]) -> list[str]:
    """A LettaResponse in the same terms as a stream: its messages, then its stop reason and usage."""
    messages = body.get("messages")
    events = [Event(None, message) for message in (messages if isinstance(messages, list) else [])]
    events += [Event(None, body[key]) for key in ("stop_reason", "usage") if isinstance(body.get(key), dict)]
    return summary(events)


def broken_rules(messages: Sequence[Any]) -> list[str]:
    """Which of the id and date rules real Letta's messages follow are broken, each named once: a
    `message-<uuid4>` id; an `otid` that is the id's uuid with its low 7 bits replaced by the message's
    index in its step; a date to the second in UTC; a `step-<uuid4>` step or none; the parts of one
    message (same id) sharing its step. (Not its date: real Letta dates each streamed part when it sends
    it, so the parts of a message that spans a second differ, as a `make live` run showed.)"""
    broken: set[str] = set()
    parts: dict[str, Any] = {}
    for message in messages:
        if not isinstance(message, dict) or "id" not in message:
            continue  # stop reasons, usage
        found = _MESSAGE_ID.match(str(message["id"]))
        if found is None:
            broken.add("id is message-<uuid4>")
        otid = message.get("otid")
        if otid is not None and (
            not _OTID.match(str(otid)) or found is None or not _same_high_bits(found.group(1), str(otid))
        ):
            broken.add("otid is the id's uuid with its low 7 bits an index")
        if not _DATE.match(str(message.get("date"))):
            broken.add("date is to the second, +00:00")
        step = message.get("step_id")
        if step is not None and not _STEP_ID.match(str(step)):
            broken.add("step_id is step-<uuid4> or null")
        if parts.setdefault(str(message["id"]), step) != step:
            broken.add("the parts of a message share its step")
    return sorted(broken)


def _same_high_bits(uuid: str, otid: str) -> bool:
    return uuid[:-2] == otid[:-2] and int(uuid[-2:], 16) >> 7 == int(otid[-2:], 16) >> 7


def said(messages: Sequence[Any], *, history: bool = False) -> list[tuple[Any, ...]]:
    """What the messages say, as far as it is the same on every run: the reasoning (stripped), the
    assistant's and the user's text, a tool call's name and arguments, a tool return's name and status;
    the fragments of one message (`stream_tokens`) joined first. Left out because they differ by design: a
    successful tool's return (a search's timestamps), a Letta notice's time (only its type is kept), the
    arguments of a streamed tool call (0.11.7 streams fragments that do not join into JSON) and, in a
    history (`history`), the system message (the agent's prompt, which only the real server writes)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict) or "id" not in message or "message_type" not in message:
            continue  # stop reasons, usage, errors
        last = merged[-1] if merged else None
        if last is not None and (last["id"], last["message_type"]) == (
            message["id"],
            message["message_type"],
        ):
            _join(last, message)
        else:
            merged.append({**message, "_parts": 1})
    return [entry for message in merged if (entry := _said(message, history)) is not None]


def _join(into: dict[str, Any], fragment: dict[str, Any]) -> None:
    into["_parts"] += 1
    for key in ("reasoning", "content"):
        if isinstance(fragment.get(key), str):
            into[key] = str(into.get(key) or "") + fragment[key]
    call, piece = into.get("tool_call"), fragment.get("tool_call")
    if isinstance(call, dict) and isinstance(piece, dict):
        into["tool_call"] = {
            **call,
            "name": call.get("name") or piece.get("name"),
            "arguments": str(call.get("arguments") or "") + str(piece.get("arguments") or ""),
        }


def _said(message: dict[str, Any], history: bool) -> tuple[Any, ...] | None:
    kind = str(message["message_type"])
    if kind == "reasoning_message":
        return (kind, str(message.get("reasoning") or "").strip())
    if kind == "assistant_message":
        return (kind, message.get("content"))
    if kind == "tool_call_message":
        found = message.get("tool_call")
        call: dict[str, Any] = found if isinstance(found, dict) else {}
        arguments: Any = None
        if message["_parts"] == 1:
            try:
                arguments = json.loads(str(call.get("arguments")))
            except ValueError:
                arguments = call.get("arguments")
        return (kind, call.get("name"), arguments)
    if kind == "tool_return_message":
        return (kind, message.get("name"), message.get("status"))
    if kind == "user_message":
        text = message.get("content")
        notice = letta_notice(text) if isinstance(text, str) else None
        return (kind, f"<{notice}>" if notice else text)
    if kind == "system_message":
        return None if history else (kind, message.get("content"))
    return (kind,)
