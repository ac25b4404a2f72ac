"""Typing notices, read receipts and read markers (room account data): the non-event data of the message path
that a /sync will read, each stored with a position on one ephemeral stream.

Not locked on its own: `MatrixStore` holds its lock around every call. Reads the rooms (never writes them):
`rooms` is the homeserver's room directory. Every status, errcode, error text and which-error-wins rule is
Synapse 1.163's, as probed (the comments name the probe numbers of the issue 13 research)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from mockgen.store.errors import MatrixError
from mockgen.store.matrix import rules
from mockgen.store.matrix.errcodes import M_FORBIDDEN, M_INVALID_PARAM, M_UNKNOWN
from mockgen.store.matrix.ids import Ids
from mockgen.store.matrix.model import (
    AccountData,
    Event,
    Receipt,
    ReceiptKey,
    Room,
    RoomEphemeral,
    Typing,
    User,
)

# Synapse: the receipt types the endpoint takes; m.fully_read is stored as room account data, not a receipt.
RECEIPT_TYPES = ("m.read", "m.read.private", "m.fully_read")
FULLY_READ = "m.fully_read"
MAIN_THREAD = "main"
TYPING_DEFAULT_MS = 30_000
TYPING_MAX_MS = 120_000
# Synapse's RoomID.is_valid: `!opaque:server`, or room version 12's `!` + a 43-character url-safe hash.
_ROOM_ID = re.compile(r"^!(?:[^:]*:.+|[A-Za-z0-9_-]{43})$")


def receipt_type_error() -> MatrixError:
    # Synapse lists the types from a Python set, in an order that changes per process: compare by rule.
    return MatrixError(400, M_UNKNOWN, f"Receipt type must be {', '.join(RECEIPT_TYPES)}")


def _not_in_room(user_id: str, room_id: str) -> MatrixError:
    return MatrixError(403, M_FORBIDDEN, f"User {user_id} not in room {room_id}")


def _no_permission() -> MatrixError:
    return MatrixError(403, M_FORBIDDEN, "You don't have permission to access that event.")


def _thread_of(event: Event) -> str:
    """The thread an event belongs to: the root of an `m.thread` relation, else the main timeline."""
    relates = event.content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        if isinstance(root, str):
            return root
    return MAIN_THREAD


class Ephemeral:
    """Per room: who is typing (until when) and the latest receipt per (type, user, thread); per (user, room):
    room account data (`m.fully_read`). `stream` is the last ephemeral position handed out."""

    def __init__(self, ids: Ids, rooms: Mapping[str, Room]) -> None:
        self._ids = ids
        self._rooms = rooms
        self.stream = 0
        self.by_room: dict[str, RoomEphemeral] = {}
        self.account_data: dict[tuple[str, str], dict[str, AccountData]] = {}

    def _next(self, room_id: str, user_id: str | None = None) -> int:
        """A position on the homeserver's one stream (shared with events: one /sync token counts both), for
        the syncs of the room's joined members, who alone see its typing and receipts (or of `user_id` alone:
        their room account data)."""
        room = self._rooms.get(room_id)
        audience = {user_id} if user_id is not None else room.joined_members() if room is not None else set()
        self.stream = self._ids.next_stream(audience)
        return self.stream

    def _room(self, room_id: str) -> RoomEphemeral:
        return self.by_room.setdefault(room_id, RoomEphemeral())

    # -- events and who may see them

    @staticmethod
    def _event(room: Room | None, event_id: str) -> tuple[int, Event] | None:
        position = room.positions.get(event_id) if room is not None else None
        if room is None or position is None:
            return None
        return position, room.timeline[position]

    @staticmethod
    def _visible(room: Room, position: int, user_id: str) -> bool:
        """Synapse's default (`shared`) history visibility, as its receipt checks apply it: a member sees
        every event; one who left (or was kicked) sees the events up to their leave [4.23]; anyone else
        nothing."""
        membership = room.membership(user_id)
        if membership == "join":
            return True
        if membership != "leave":
            return False
        leave = room.state[("m.room.member", user_id)].event_id
        return room.positions[leave] >= position

    # -- typing

    def set_typing(
        self, requester: User, room_id: str, user_id: str, typing: bool, timeout: int | None
    ) -> None:
        """PUT /rooms/{roomId}/typing/{userId}: path user id, then another user (400, before membership and
        even for an unknown room) [6.15, 6.35], then membership (403, also for an unknown room) [6.16,
        6.18]."""
        rules.parse_user_id(user_id)
        if rules.local_localpart(user_id, self._ids.server_name) is None:
            raise MatrixError(400, M_UNKNOWN, "User is not hosted on this homeserver")
        if user_id != requester.user_id:
            raise MatrixError(400, M_FORBIDDEN, "Cannot set another user's typing state")
        room = self._rooms.get(room_id)
        if room is None or room.membership(user_id) != "join":
            raise _not_in_room(user_id, room_id)
        state = self._room(room_id)
        now = self._ids.now_ms()
        self._expire(room_id, state, now)
        if typing:
            duration = min(max(TYPING_DEFAULT_MS if timeout is None else timeout, 0), TYPING_MAX_MS)
            current = state.typing.get(user_id)
            if current is None:
                state.typing_stream = self._next(room_id)
            state.typing[user_id] = Typing(now + duration, state.typing_stream)
        elif state.typing.pop(user_id, None) is not None:
            state.typing_stream = self._next(room_id)

    def _expire(self, room_id: str, state: RoomEphemeral, now: int) -> None:
        expired = [user for user, entry in state.typing.items() if entry.expires_ms <= now]
        for user in expired:
            del state.typing[user]
        if expired:
            state.typing_stream = self._next(room_id)

    def typing_users(self, room_id: str) -> list[str]:
        """Who is typing in the room now (expired notices are dropped as they are read)."""
        state = self.by_room.get(room_id)
        if state is None:
            return []
        self._expire(room_id, state, self._ids.now_ms())
        return list(state.typing)

    # -- receipts

    def post_receipt(
        self, requester: User, room_id: str, receipt_type: str, event_id: str, body: dict[str, Any]
    ) -> None:
        """POST /rooms/{roomId}/receipt/{receiptType}/{eventId}, after its ids and type (`check_receipt_path`)
        and the JSON body: thread_id, then what the receipt says about the event."""
        thread_id = body.get("thread_id")
        if "thread_id" in body and (not isinstance(thread_id, str) or not thread_id):
            raise MatrixError(400, M_INVALID_PARAM, "thread_id field must be a non-empty string")  # 7.30
        if receipt_type == FULLY_READ:
            if thread_id is not None:
                raise MatrixError(
                    400, M_INVALID_PARAM, "thread_id is not compatible with m.fully_read receipts."
                )  # 7.33
            self._set_fully_read(requester, room_id, event_id)
            return
        room = self._rooms.get(room_id)
        found = self._event(room, event_id)
        if room is None or found is None:
            return  # an unknown event or room: 200 and nothing stored [7.20, 7.22, 7.27]
        position, event = found
        if thread_id is not None and _thread_of(event) != thread_id and event_id != thread_id:
            raise MatrixError(
                400, M_INVALID_PARAM, f"event_id {event_id} is not related to thread {thread_id}"
            )  # 7.32, 7.40
        if not self._visible(room, position, requester.user_id):
            raise _no_permission()  # 7.23
        self._store_receipt(room, position, receipt_type, requester.user_id, event_id, thread_id)

    @staticmethod
    def check_receipt_path(room_id: str, receipt_type: str, event_id: str) -> None:
        """Before the body is read: the ids [7.21, 7.26, 7.29], then the receipt type [7.19, 7.44]."""
        if not _ROOM_ID.match(room_id) or not event_id.startswith("$"):
            raise MatrixError(400, M_UNKNOWN, "A valid room ID and event ID must be specified")
        if receipt_type not in RECEIPT_TYPES:
            raise receipt_type_error()

    def _store_receipt(
        self,
        room: Room,
        position: int,
        receipt_type: str,
        user_id: str,
        event_id: str,
        thread_id: str | None,
    ) -> None:
        """Keep the newest receipt per (type, user, thread): an older event changes nothing [7.9]."""
        state = self._room(room.room_id)
        key = ReceiptKey(receipt_type, user_id, thread_id)
        current = state.receipts.get(key)
        if current is not None:
            known = self._event(room, current.event_id)
            if known is not None and known[0] >= position:
                return
        state.receipts[key] = Receipt(event_id, self._ids.now_ms(), self._next(room.room_id))

    def receipts(self, room_id: str) -> dict[ReceiptKey, Receipt]:
        state = self.by_room.get(room_id)
        return dict(state.receipts) if state is not None else {}

    # -- read markers

    def set_read_markers(self, requester: User, room_id: str, body: dict[str, Any]) -> None:
        """POST /rooms/{roomId}/read_markers. Synapse takes the keys in Python-set order, so which error wins
        and what was stored before it vary; the mock checks `m.fully_read` first and stores nothing on an
        error. `m.fully_read` needs the event in the room (404) but no membership [8.15, 8.22, 8.25];
        `m.read`/`m.read.private` on an unknown event or room are no-ops, on a hidden event 403 [8.16,
        8.23]."""
        marker = body.get(FULLY_READ)
        if FULLY_READ in body:
            self._fully_read_event(room_id, marker)
        room = self._rooms.get(room_id)
        receipts: list[tuple[int, str, str]] = []
        for receipt_type in ("m.read", "m.read.private"):
            event_id = body.get(receipt_type)
            if event_id is None:
                continue  # absent or null [8.12]
            found = self._event(room, str(event_id))
            if room is None or found is None:
                continue
            if not self._visible(room, found[0], requester.user_id):
                raise _no_permission()
            receipts.append((found[0], receipt_type, str(event_id)))
        if FULLY_READ in body:
            self._set_fully_read(requester, room_id, marker)
        for position, receipt_type, event_id in receipts:
            assert room is not None  # receipts are only kept for events found in it
            self._store_receipt(room, position, receipt_type, requester.user_id, event_id, None)

    def _fully_read_event(self, room_id: str, event_id: Any) -> int:
        found = self._event(self._rooms.get(room_id), str(event_id)) if isinstance(event_id, str) else None
        if found is None:
            raise MatrixError(404, M_UNKNOWN, f"Could not find event {event_id} in room {room_id}")
        return found[0]

    def _set_fully_read(self, requester: User, room_id: str, event_id: Any) -> None:
        """The `m.fully_read` room account data; a marker on an older event than the current one is ignored
        [8.5]."""
        position = self._fully_read_event(room_id, event_id)
        data = self.account_data.setdefault((requester.user_id, room_id), {})
        current = data.get(FULLY_READ)
        if current is not None:
            known = self._event(self._rooms.get(room_id), str(current.content.get("event_id")))
            if known is not None and known[0] >= position:
                return
        data[FULLY_READ] = AccountData({"event_id": event_id}, self._next(room_id, requester.user_id))

    def room_account_data(self, user_id: str, room_id: str) -> dict[str, dict[str, Any]]:
        return {
            kind: copy.deepcopy(data.content)
            for kind, data in self.account_data.get((user_id, room_id), {}).items()
        }
