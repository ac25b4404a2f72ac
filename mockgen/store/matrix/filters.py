"""Sync filters: the checks Synapse makes of a filter definition (its jsonschema, 400 M_UNKNOWN) and the parts
of it the mock applies. Probe numbers of the issue 13 research in brackets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mockgen.store.errors import MatrixError
from mockgen.store.matrix.errcodes import M_UNKNOWN
from mockgen.store.matrix.model import Event

DEFAULT_TIMELINE_LIMIT = 10  # [1.4]
MAX_TIMELINE_LIMIT = 100  # Synapse's filter_timeline_limit [1.11]


@dataclass(frozen=True)
class SyncFilter:
    """The parts of a filter the mock applies."""

    limit: int = DEFAULT_TIMELINE_LIMIT
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    # room.state: member events only for the timeline's senders, and the room summary [issue 13 lazy probes]
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    presence: bool = True  # the top-level presence filter lets m.presence through

    def wants(self, event: Event) -> bool:
        return self.wants_type(event.type)

    def wants_type(self, event_type: str) -> bool:
        if self.types is not None and not any(_matches(event_type, t) for t in self.types):
            return False
        return not any(_matches(event_type, t) for t in self.not_types)

    def wants_room(self, room_id: str) -> bool:
        if self.rooms is not None and room_id not in self.rooms:
            return False
        return room_id not in self.not_rooms


def _matches(event_type: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def _strings(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MatrixError(400, M_UNKNOWN, f"{json.dumps(value)} is not of type 'array' ({where})")
    return tuple(value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatrixError(400, M_UNKNOWN, f"{json.dumps(value)} is not of type 'object'")
    return value


def check_filter(definition: Any) -> SyncFilter:
    """The filter schema checks Synapse makes (400 M_UNKNOWN with the jsonschema message [1.41]) and what the
    mock applies of it."""
    room = _object(_object(definition).get("room", {}))
    timeline = _object(room.get("timeline", {}))
    limit = timeline.get("limit", DEFAULT_TIMELINE_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int | float):
        raise MatrixError(400, M_UNKNOWN, f"{json.dumps(limit)} is not of type 'number'")
    rooms = _strings(room.get("rooms"), "rooms")
    not_rooms = _strings(room.get("not_rooms"), "not_rooms") or ()
    for room_id in (*(rooms or ()), *not_rooms):
        if not room_id.startswith("!"):
            raise MatrixError(400, M_UNKNOWN, f"'{room_id}' is not a 'matrix_room_id'")
    state = _object(room.get("state", {}))
    presence = _object(definition.get("presence", {}))
    presence_filter = SyncFilter(
        types=_strings(presence.get("types"), "types"),
        not_types=_strings(presence.get("not_types"), "not_types") or (),
    )
    return SyncFilter(
        limit=max(0, min(int(limit), MAX_TIMELINE_LIMIT)),
        types=_strings(timeline.get("types"), "types"),
        not_types=_strings(timeline.get("not_types"), "not_types") or (),
        rooms=rooms,
        not_rooms=not_rooms,
        include_leave=room.get("include_leave") is True,
        lazy_load_members=state.get("lazy_load_members") is True,
        include_redundant_members=state.get("include_redundant_members") is True,
        presence=presence_filter.wants_type("m.presence"),
    )
