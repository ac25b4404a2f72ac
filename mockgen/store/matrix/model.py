"""The homeserver's data: accounts, devices, UIA sessions, rooms and their events. No rules, no ids minted
here; a room only answers questions about its own state."""

from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# (event type, state key): what a room's current state is keyed by.
StateKey = tuple[str, str]


class TokenOwner(NamedTuple):
    user_id: str
    device_id: str


class TxnKey(NamedTuple):
    """What makes a PUT /send transaction id idempotent: the same key answers with the first event. The event
    type is not part of it (Synapse 1.163: the same txn id with another type returns the first event), nor is
    the r0/v3 prefix."""

    user_id: str
    device_id: str
    room_id: str
    txn_id: str


@dataclass
class Device:
    device_id: str
    display_name: str | None
    tokens: set[str] = field(default_factory=set)


@dataclass
class User:
    user_id: str
    localpart: str
    password: str | None
    admin: bool = False
    displayname: str | None = None
    deactivated: bool = False
    locked: bool = False
    user_type: str | None = None
    creation_ts: int = 0
    devices: dict[str, Device] = field(default_factory=dict)


@dataclass
class UiaSession:
    """A registration's user-interactive-auth session: the latest non-empty request fields and the password,
    so a later request may carry `auth` alone, and the account it registered, so a retry gets it again."""

    fields: dict[str, Any]
    password: str | None = None
    completed: list[str] = field(default_factory=list)
    registered_user_id: str | None = None


@dataclass
class Event:
    event_id: str
    room_id: str
    sender: str
    type: str
    content: dict[str, Any]
    origin_server_ts: int
    state_key: str | None = None
    replaces_state: str | None = None
    stream: int = 0  # its position on the homeserver's stream (`Ids.next_stream`), what /sync tokens count
    # (device id, txn id) of a PUT /send: /sync gives the sender's device `unsigned.transaction_id`.
    transaction: tuple[str, str] | None = None

    def client_format(self, now_ms: int) -> dict[str, Any]:
        unsigned: dict[str, Any] = {"age": max(0, now_ms - self.origin_server_ts)}
        if self.replaces_state:
            unsigned["replaces_state"] = self.replaces_state
        event: dict[str, Any] = {
            "content": copy.deepcopy(self.content),
            "event_id": self.event_id,
            "origin_server_ts": self.origin_server_ts,
            "room_id": self.room_id,
            "sender": self.sender,
            "type": self.type,
            "unsigned": unsigned,
            "user_id": self.sender,
            "age": unsigned["age"],
        }
        if self.state_key is not None:
            event["state_key"] = self.state_key
        if self.replaces_state:
            event["replaces_state"] = self.replaces_state
        return event


def _valid_via(via: Any) -> bool:
    return isinstance(via, list) and bool(via) and all(isinstance(server, str) for server in via)


@dataclass
class Room:
    room_id: str
    version: str
    creator: str
    additional_creators: tuple[str, ...] = ()
    state: dict[StateKey, Event] = field(default_factory=dict)
    # Every event of the room, state or not, in the order it was sent (so in stream order); `Rooms._append`
    # is the only writer, of `positions` too: event id -> its index in the timeline.
    timeline: list[Event] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)

    def membership(self, user_id: str) -> str | None:
        event = self.state.get(("m.room.member", user_id))
        return str(event.content.get("membership")) if event else None

    def content(self, event_type: str, state_key: str = "") -> dict[str, Any]:
        event = self.state.get((event_type, state_key))
        return event.content if event else {}

    def duplicate_state(
        self, sender: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str | None:
        """The current event's id when `sender` sends the same content again (Synapse answers with it)."""
        current = self.state.get((event_type, state_key))
        if current is not None and current.sender == sender and current.content == content:
            return current.event_id
        return None

    def index_after(self, position: int) -> int:
        """How many of the room's events are at or before a stream position."""
        timeline = self.timeline
        if not timeline or timeline[-1].stream <= position:
            return len(timeline)  # the common case of a sync: nothing since (no search, no key calls)
        return bisect.bisect_right(timeline, position, key=lambda event: event.stream)

    def state_before(self, index: int) -> list[Event]:
        """The state as it was before the event at `index` of the timeline (all of it past the end)."""
        state: dict[StateKey, Event] = {}
        for event in self.timeline[:index]:
            if event.state_key is not None:
                state[(event.type, event.state_key)] = event
        return list(state.values())

    def previous_membership(self, event: Event) -> str | None:
        """For a member event, the membership its state key had before it (None: no member event)."""
        if event.replaces_state is None:
            return None
        return str(self.timeline[self.positions[event.replaces_state]].content.get("membership"))

    def state_after(self, event_id: str) -> dict[StateKey, Event]:
        """The state as it was right after the state event `event_id` (every state event is in the
        timeline, in order)."""
        state: dict[StateKey, Event] = {}
        for event in self.timeline:
            if event.state_key is not None:
                state[(event.type, event.state_key)] = event
                if event.event_id == event_id:
                    return state
        raise KeyError(event_id)

    def links(self, event_type: str) -> list[str]:
        """The state keys of the valid `m.space.child` or `m.space.parent` events: the spec ignores one
        without a non-empty `via` list of server names (which is also how a link is removed)."""
        return [
            key
            for (kind, key), event in self.state.items()
            if kind == event_type and _valid_via(event.content.get("via"))
        ]

    def members(self) -> dict[str, str]:
        """Every user with a member event, and their membership."""
        return {
            key: str(event.content.get("membership"))
            for (kind, key), event in self.state.items()
            if kind == "m.room.member"
        }

    def joined_members(self) -> set[str]:
        return {user_id for user_id, membership in self.members().items() if membership == "join"}

    @property
    def join_rule(self) -> str:
        return str(self.content("m.room.join_rules").get("join_rule", "invite"))

    @property
    def is_space(self) -> bool:
        return self.content("m.room.create").get("type") == "m.space"

    def power_level(self, user_id: str) -> float:
        # Room version 12: creators outrank every power level.
        if self.version == "12" and (user_id == self.creator or user_id in self.additional_creators):
            return float("inf")
        levels = self.content("m.room.power_levels")
        users = levels.get("users", {})
        if user_id in users:
            return float(users[user_id])
        return float(levels.get("users_default", 0))

    def level_for_event(self, event_type: str, is_state: bool) -> int:
        levels = self.content("m.room.power_levels")
        events = levels.get("events", {})
        if event_type in events:
            return int(events[event_type])
        return int(levels.get("state_default", 50) if is_state else levels.get("events_default", 0))

    def level_for(self, action: str, default: int) -> int:
        return int(self.content("m.room.power_levels").get(action, default))


# -- what /sync will read besides events: typing, receipts, room account data (the message path, issue 13)


class ReceiptKey(NamedTuple):
    """A user's latest receipt of one type in one thread of a room (`thread_id` None: unthreaded)."""

    receipt_type: str  # m.read | m.read.private
    user_id: str
    thread_id: str | None


@dataclass
class Receipt:
    event_id: str
    ts: int
    stream: int  # the ephemeral stream position it was stored at


@dataclass
class Typing:
    expires_ms: int
    stream: int


@dataclass
class AccountData:
    content: dict[str, Any]
    stream: int


@dataclass
class RoomEphemeral:
    """A room's typing users (until each one's expiry) and its latest receipts."""

    typing: dict[str, Typing] = field(default_factory=dict)
    # Bumped whenever the set of typing users changes (a start, a stop, an expiry seen by a read).
    typing_stream: int = 0
    receipts: dict[ReceiptKey, Receipt] = field(default_factory=dict)
