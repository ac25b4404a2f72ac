"""Sync filters: the checks Synapse makes of a filter definition (its jsonschema, 400 M_UNKNOWN), the parts
of it the mock applies, and the filters users store. Probe numbers of the issue 13 research in brackets.

`StoredFilters` is not locked on its own: `MatrixStore` holds its lock around every call."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from mockgen.store.errors import MatrixError
from mockgen.store.matrix.errcodes import M_FORBIDDEN, M_INVALID_PARAM, M_NOT_FOUND, M_NOT_JSON, M_UNKNOWN
from mockgen.store.matrix.model import Event, User

DEFAULT_TIMELINE_LIMIT = 10  # [1.4]
MAX_TIMELINE_LIMIT = 100  # Synapse's filter_timeline_limit [1.11]


@dataclass(frozen=True)
class SyncFilter:
    """The parts of a filter the mock applies."""

    limit: int = DEFAULT_TIMELINE_LIMIT
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    # Sets: a relay's filter lists every one of its rooms, and each sync asks about each of them.
    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
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
        rooms=None if rooms is None else frozenset(rooms),
        not_rooms=frozenset(not_rooms),
        include_leave=room.get("include_leave") is True,
        lazy_load_members=state.get("lazy_load_members") is True,
        include_redundant_members=state.get("include_redundant_members") is True,
        presence=presence_filter.wants_type("m.presence"),
    )


class StoredFilters:
    """The filters each user stored (POST /user/{userId}/filter), and the filter of a /sync request."""

    def __init__(self) -> None:
        self.filters: dict[str, list[Any]] = {}

    @staticmethod
    def _own(requester: User, user_id: str, verb: str) -> None:
        if user_id != requester.user_id:
            raise MatrixError(403, M_FORBIDDEN, f"Cannot {verb} filters for other users")

    def create_filter(self, requester: User, user_id: str, definition: dict[str, Any]) -> str:
        """POST /user/{userId}/filter: ids are the user's own counter from "0"; the same filter again gets its
        first id [1.8]."""
        self._own(requester, user_id, "create")
        check_filter(definition)
        stored = self.filters.setdefault(user_id, [])
        for number, known in enumerate(stored):
            if known == definition:
                return str(number)
        stored.append(copy.deepcopy(definition))
        return str(len(stored) - 1)

    def get_filter(self, requester: User, user_id: str, filter_id: str) -> dict[str, Any]:
        self._own(requester, user_id, "get")
        if not re.fullmatch(r"-?\d+", filter_id):
            raise MatrixError(400, M_UNKNOWN, "Invalid filter_id")
        stored = self.filters.get(user_id, [])
        number = int(filter_id)
        if not 0 <= number < len(stored):
            raise MatrixError(404, M_NOT_FOUND, "No such filter")
        definition: dict[str, Any] = copy.deepcopy(stored[number])
        return definition

    def sync_filter(self, requester: User, value: str | None) -> SyncFilter:
        """The `filter` query parameter: inline JSON (starts with `{`) or a filter id [1.39-1.45]."""
        if value is None:
            return SyncFilter()
        if value.startswith("{"):
            try:
                definition = json.loads(value)
            except ValueError:
                raise MatrixError(400, M_NOT_JSON, "Invalid filter JSON") from None
            return check_filter(definition)
        if not re.fullmatch(r"\d+", value):
            raise MatrixError(400, M_INVALID_PARAM, "Invalid filter ID")
        stored = self.filters.get(requester.user_id, [])
        if int(value) >= len(stored):
            raise MatrixError(400, M_INVALID_PARAM, "No such filter")
        return check_filter(stored[int(value)])
