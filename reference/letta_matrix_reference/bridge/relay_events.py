"""The relay's pure decisions, no I/O: which events of a /sync answer are people talking to an agent, what
of an agent's turn is said in the room, and the ids that make every step safe to repeat."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# The archetype's tool for speaking in the room: its `message` argument is what the agent says there.
MATRIX_TOOL = "matrix_agent_message"
MATRIX_TOOL_ARGUMENT = "message"
# In every reply's content: which person's message it answers and which part of the turn it is, so a
# reader (and the fuzzer's invariants) can tell an answer from a repeat.
PART_KEY = "io.letta.part"
# Bots speak in notices; relaying one would let two bridges answer each other for ever.
SKIPPED_MSGTYPES = frozenset({"m.notice"})
OTID_NAMESPACE = uuid.UUID("5b8f5d3e-7a4c-4f0e-9a57-4c9b1f0e2a11")


@dataclass(frozen=True)
class AgentRoom:
    agent_id: str
    user_id: str  # the agent's Matrix user, who answers in the room
    name: str


@dataclass(frozen=True)
class Incoming:
    """A person's message to an agent."""

    event_id: str
    room_id: str
    sender: str
    body: str


TIMELINE_TYPES = ("m.room.message", "m.room.member")
# Pages of history read to fill one room's gap: beyond them (that many messages between two syncs) the oldest
# are left, and said so, rather than the relay never catching up.
GAP_PAGES = 50
GAP_PAGE_SIZE = 100
log = logging.getLogger(__name__)


class HistoryPage(Protocol):
    async def __call__(
        self,
        room_id: str,
        *,
        from_token: str,
        to_token: str | None = None,
        limit: int = 100,
        event_types: Sequence[str] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...


def sync_filter(room_ids: Collection[str], limit: int) -> dict[str, Any]:
    """The relay's /sync filter: the agent rooms' messages and memberships, nothing else."""
    nothing = {"not_types": ["*"]}
    return {
        "presence": nothing,
        "account_data": nothing,
        "room": {
            "rooms": sorted(room_ids),
            "timeline": {"types": list(TIMELINE_TYPES), "limit": limit},
            "state": {"types": ["m.room.member"], "lazy_load_members": True},
            "ephemeral": nothing,
            "account_data": nothing,
        },
    }


def _joined_rooms(sync: Mapping[str, Any]) -> Mapping[str, Any]:
    """A sync's `rooms.join` (empty when the answer has none, or not as an object)."""
    rooms = sync.get("rooms")
    joined = rooms.get("join") if isinstance(rooms, dict) else None
    return joined if isinstance(joined, dict) else {}


async def fill_gaps(
    sync: dict[str, Any], since: str | None, rooms: Mapping[str, AgentRoom], history: HistoryPage
) -> None:
    """Complete, in place, each agent room's `limited` timeline of an incremental sync (`since` set): the
    events after `since` that the window left out are read back from the timeline's `prev_batch` to `since`
    (a /sync token, which Synapse takes as `to`) and put in front of the window, oldest first. Without them a
    room that got more than the timeline limit between two syncs would lose its oldest messages."""
    for room_id, room in _joined_rooms(sync).items() if since is not None else ():
        timeline = room.get("timeline") if room_id in rooms and isinstance(room, dict) else None
        token = timeline.get("prev_batch") if isinstance(timeline, dict) else None
        if (
            not isinstance(timeline, dict)
            or timeline.get("limited") is not True
            or not isinstance(token, str)
        ):
            continue
        older: list[dict[str, Any]] = []
        for _ in range(GAP_PAGES):
            chunk, end = await history(
                room_id, from_token=token, to_token=since, limit=GAP_PAGE_SIZE, event_types=TIMELINE_TYPES
            )
            older.extend(chunk)
            if not chunk or end is None or end == token:
                break
            token = end
        else:
            log.error(
                "relay: more than %d events in %s since the last sync; the older ones are left",
                len(older),
                room_id,
            )
        events = timeline.get("events")
        timeline["events"] = [*reversed(older), *(events if isinstance(events, list) else [])]


def incoming(
    sync: Mapping[str, Any], rooms: Mapping[str, AgentRoom], bridge_users: Collection[str], watcher: str
) -> list[Incoming]:
    """People's messages in agent rooms, in timeline order per room. Left out: rooms that are no agent's,
    anything sent by the bridge's own users (no echo loops), notices, and whatever came before the
    `watcher`'s (the user who syncs) latest join in the window: a room's history from before the bridge
    joined it is not the bridge's to answer. (When the join is not in the window, it is older than all of
    it.)"""
    found: list[Incoming] = []
    for room_id, room in _joined_rooms(sync).items():
        if room_id not in rooms or not isinstance(room, dict):
            continue
        events = room.get("timeline", {}).get("events", [])
        events = events if isinstance(events, list) else []
        start = 0
        for n, event in enumerate(events):
            if (
                isinstance(event, dict)
                and event.get("type") == "m.room.member"
                and event.get("state_key") == watcher
                and isinstance(event.get("content"), dict)
                and event["content"].get("membership") == "join"
            ):
                start = n + 1
        for event in events[start:]:
            message = _message(event, room_id)
            if message is not None and message.sender not in bridge_users:
                found.append(message)
    return found


def _message(event: Any, room_id: str) -> Incoming | None:
    if not isinstance(event, dict) or event.get("type") != "m.room.message":
        return None
    content, event_id, sender = event.get("content"), event.get("event_id"), event.get("sender")
    if not isinstance(content, dict) or not isinstance(event_id, str) or not isinstance(sender, str):
        return None
    body = content.get("body")
    if not isinstance(body, str) or not body.strip() or content.get("msgtype") in SKIPPED_MSGTYPES:
        return None
    return Incoming(event_id, room_id, sender, body)


def replies(messages: list[dict[str, Any]]) -> list[str]:
    """What an agent's turn says in the room, in order: each assistant message, and the `message` of each
    `matrix_agent_message` tool call."""
    said: list[str] = []
    for message in messages:
        kind = message.get("message_type")
        if kind == "assistant_message":
            text = _text(message.get("content"))
        elif kind == "tool_call_message":
            text = _tool_message(message.get("tool_call"))
        else:
            continue
        if text:
            said.append(text)
    return said


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # text parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict)) or None
    return None


def _tool_message(call: Any) -> str | None:
    if not isinstance(call, dict) or call.get("name") != MATRIX_TOOL:
        return None
    arguments = call.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    text = arguments.get(MATRIX_TOOL_ARGUMENT) if isinstance(arguments, dict) else None
    return text if isinstance(text, str) else None


def reply_content(answering: Incoming, part: int, body: str, *, notice: bool = False) -> dict[str, Any]:
    """A reply as a Matrix rich reply to the person's message."""
    return {
        "msgtype": "m.notice" if notice else "m.text",
        "body": body,
        "m.relates_to": {"m.in_reply_to": {"event_id": answering.event_id}},
        PART_KEY: part,
    }


def txn_id(event_id: str, part: int) -> str:
    """The transaction id of reply `part` to `event_id`: the same on every attempt and every restart, so
    the homeserver answers a repeat with the first event instead of posting it again."""
    return f"relay-{hashlib.sha256(event_id.encode()).hexdigest()[:32]}-{part}"


def otid(event_id: str) -> str:
    """The Letta otid of the message relayed for `event_id` (kept in the agent's history)."""
    return str(uuid.uuid5(OTID_NAMESPACE, event_id))
