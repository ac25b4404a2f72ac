"""Presence: each user's state as their /syncs set it (`set_presence`), at a position on the homeserver's
stream, and what a /sync shows of the users who share a room with its user. Probed on Synapse 1.163.2 for
issue 13 (presence is on in its default config; corpus steps `presence: ...`):

- a sync sets its user `online` (or `unavailable` as asked); `set_presence=offline` changes nothing; a user
  who never synced is `offline`. Only a change of state is news (a second sync while online is not).
- an initial sync lists the user and everyone sharing a joined room with them, except those offline;
- an incremental sync lists whose state changed since `since` (offline included), and the current state of
  each user who newly joined or was newly invited to one of the user's rooms (so a room-mate who never synced
  comes as `{"presence": "offline"}`); a change wakes the room-mates' long-polls;
- content: `online` has `last_active_ago` and `currently_active: true`, `unavailable` `last_active_ago`
  only, `offline` nothing else until the user was ever active.

Not locked on its own: `MatrixStore` holds its lock around every call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mockgen.store.matrix.ids import Ids
from mockgen.store.matrix.model import Room

OFFLINE = "offline"


@dataclass
class UserPresence:
    state: str = OFFLINE
    last_active_ms: int | None = None
    stream: int = 0


class Presence:
    def __init__(self, ids: Ids, joined_rooms_of: Callable[[str], list[Room]]) -> None:
        self._ids = ids
        self._joined_rooms_of = joined_rooms_of  # a user's joined rooms (`Rooms.joined_rooms_of`)
        self.users: dict[str, UserPresence] = {}

    def room_mates(self, user_id: str) -> set[str]:
        """Everyone joined to a room `user_id` is joined to (`user_id` included)."""
        mates = {user_id}
        for room in self._joined_rooms_of(user_id):
            mates.update(room.joined_members())
        return mates

    def set_from_sync(self, user_id: str, set_presence: str | None) -> None:
        state = set_presence or "online"
        if state == OFFLINE:
            return  # Synapse: "offline" only means the sync does not mark the user online
        current = self.users.setdefault(user_id, UserPresence())
        current.last_active_ms = self._ids.now_ms()
        if current.state != state:
            current.state = state
            current.stream = self._ids.next_stream(self.room_mates(user_id))

    def event(self, user_id: str, now: int) -> dict[str, Any]:
        current = self.users.get(user_id, UserPresence())
        content: dict[str, Any] = {"presence": current.state}
        if current.last_active_ms is not None:
            content["last_active_ago"] = max(0, now - current.last_active_ms)
        if current.state == "online":
            content["currently_active"] = True
        return {"type": "m.presence", "sender": user_id, "content": content}

    def for_sync(self, user_id: str, position: int | None) -> list[dict[str, Any]]:
        """The m.presence events of a sync from `position` (None: an initial sync)."""
        if position is None:
            mates = self.room_mates(user_id)
            shown = {u for u in mates if self.users.get(u, UserPresence()).state != OFFLINE}
        else:
            # Whose state changed since is rarely anyone: the room-mates (every member of every room) are
            # gathered only when someone did.
            changed = {u for u, current in self.users.items() if current.stream > position}
            shown = changed & self.room_mates(user_id) if changed else set()
            shown |= self._newly_shared(user_id, position)
        now = self._ids.now_ms()
        return [self.event(other, now) for other in sorted(shown)]

    def _newly_shared(self, user_id: str, position: int) -> set[str]:
        """Users whose membership in one of the user's rooms became join or invite after `position` (all the
        members of a room the user joined after it); a profile change (join to join) is no news. Reads only
        the events after `position`."""
        found: set[str] = set()
        for room in self._joined_rooms_of(user_id):
            members: dict[str, str] | None = None
            for event in room.timeline[room.index_after(position) :]:
                if event.type != "m.room.member" or event.state_key is None:
                    continue
                membership = str(event.content.get("membership"))
                if membership not in ("join", "invite") or room.previous_membership(event) == membership:
                    continue
                members = room.members() if members is None else members
                if event.state_key == user_id:
                    found.update(room.joined_members())
                elif members.get(event.state_key) in ("join", "invite"):
                    found.add(event.state_key)
        found.discard(user_id)
        return found
