"""GET /rooms/{roomId}/messages: a room's history, paged by tokens in both directions, as Synapse's
pagination handler answers it (the probe numbers in brackets).

Not locked on its own: `MatrixStore` holds its lock around every call. Reads the rooms (never writes them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mockgen.store.errors import MatrixError
from mockgen.store.matrix.errcodes import M_FORBIDDEN
from mockgen.store.matrix.filters import SyncFilter
from mockgen.store.matrix.ids import Ids
from mockgen.store.matrix.model import Room, User
from mockgen.store.matrix.tokens import page_position, page_token
from mockgen.store.matrix.visibility import visible, world_readable


class Pagination:
    def __init__(self, ids: Ids, rooms: Mapping[str, Room]) -> None:
        self._ids = ids
        self._rooms = rooms

    def messages(
        self,
        requester: User,
        room_id: str,
        *,
        direction: str,
        from_token: str | None,
        to_token: str | None,
        limit: int,
        types: tuple[str, ...] | None,
        not_types: tuple[str, ...],
        lazy_load_members: bool = False,
    ) -> dict[str, Any]:
        """GET /rooms/{roomId}/messages, after its parameters: a token is a place between two events of the
        stream (after every event at or before its position). `dir=b` pages back from `from` (default: now),
        `dir=f` forth (default: the room's start); `end` is absent only when nothing of the page matched the
        filter [3.17, 3.18, 3.40]. A page is then filtered by the user's history visibility (`visibility.py`):
        a member, or one who left (who reads back from their leave [3.48-3.50]), as a member; anyone else only
        peeks, and only into a world-readable room [3.53]; else, or in an unknown room, 403 [3.52]. With
        `lazy_load_members`, `state` has the chunk's senders' member events as of its first event [3.35]."""
        current = self._ids.stream
        start = (
            current if from_token is None and direction == "b" else page_position(from_token, "from", current)
        )
        stop = None if to_token is None else page_position(to_token, "to", current)
        room = self._rooms.get(room_id)
        membership = room.membership(requester.user_id) if room is not None else None
        peeking = membership not in ("join", "leave", "ban")
        if room is None or (peeking and not world_readable(room)):
            raise MatrixError(
                403,
                M_FORBIDDEN,
                f"User {requester.user_id} not in room {room_id}, and room previews are disabled",
            )
        if membership in ("leave", "ban") and direction == "b":
            start = min(start, room.state[("m.room.member", requester.user_id)].stream)
        wanted = SyncFilter(types=types, not_types=not_types)
        if direction == "b":
            window = [e for e in reversed(room.timeline) if e.stream <= start]
            if stop is not None:
                window = [e for e in window if e.stream > stop]
        else:
            window = [e for e in room.timeline if e.stream > start]
            if stop is not None:
                window = [e for e in window if e.stream <= stop]
        # Synapse filters types as it reads (its query's LIMIT counts matching events [3.32]; a page without
        # any has no `end` [3.40]), and history visibility after: a page it hides entirely still has one
        # (corpus `visibility: ...`).
        page = [e for e in window if wanted.wants(e)][:limit]
        seen = visible(room, requester.user_id, peeking=peeking)
        now = self._ids.now_ms()
        shown = [e for e in page if seen[e.event_id]]
        answer: dict[str, Any] = {
            "chunk": [e.client_format(now) for e in shown],
            "start": from_token if from_token is not None else page_token(room, start, direction),
        }
        if page:
            last = page[-1]
            answer["end"] = page_token(room, last.stream - 1 if direction == "b" else last.stream, "f")
        elif limit == 0:
            answer["end"] = answer["start"]  # an empty page asked for ends where it starts [3.8]
        if lazy_load_members and shown:
            index = room.positions[shown[0].event_id]
            at_first = {(e.type, e.state_key): e for e in room.state_before(index + 1)}
            senders = dict.fromkeys(e.sender for e in shown)
            members = [at_first[("m.room.member", u)] for u in senders if ("m.room.member", u) in at_first]
            if members:
                answer["state"] = [e.client_format(now) for e in members]
        return answer
