"""`MatrixStore`: one homeserver, the lock, and the accounts and rooms it guards.

Every public method takes the lock for its whole duration, so concurrent requests (and a test thread seeding
the mock) see each operation happen at once; the halves behind it are not locked themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from mockgen.store.matrix.accounts import Accounts, no_check
from mockgen.store.matrix.ephemeral import Ephemeral
from mockgen.store.matrix.filters import StoredFilters, SyncFilter
from mockgen.store.matrix.ids import Ids
from mockgen.store.matrix.model import Receipt, ReceiptKey, Room, User
from mockgen.store.matrix.pagination import Pagination
from mockgen.store.matrix.presence import Presence
from mockgen.store.matrix.rooms import Rooms
from mockgen.store.matrix.sync import Sync


class MatrixStore:
    """One homeserver's worth of users and rooms."""

    def __init__(
        self,
        server_name: str = "matrix.test",
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        registration_enabled: bool = True,
        public_base_url: str | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._synced = threading.Condition(self._lock)  # notified whenever a /sync answers with news
        self._ids = Ids(server_name, seed=seed, clock=clock)
        self._accounts = Accounts(
            self._ids,
            registration_enabled=registration_enabled,
            public_base_url=public_base_url,
            profile_changed=self._refresh_member_events,
        )
        self._rooms = Rooms(self._ids, self._accounts.users)
        self._ephemeral = Ephemeral(self._ids, self._rooms.rooms)
        self._presence = Presence(self._ids, self._rooms.joined_rooms_of)
        self._sync = Sync(self._ids, self._rooms, self._ephemeral, self._presence)
        self._pagination = Pagination(self._ids, self._rooms.rooms)
        self._filters = StoredFilters()
        self._txn_counter = 0

    def on_change(self, changed: Callable[[Iterable[str] | None], None]) -> None:
        """Call `changed` with the user ids each step of the stream (an event, typing, a receipt, a read
        marker) concerns: whose waiting /syncs to wake. Called with the lock held; it must not block."""
        self._ids.changed = changed

    def _refresh_member_events(self, user: User) -> None:
        self._rooms.refresh_member_events(user)

    # -- configuration and the data, for the world, the control API and tests

    @property
    def server_name(self) -> str:
        return self._ids.server_name

    @property
    def registration_enabled(self) -> bool:
        return self._accounts.registration_enabled

    @registration_enabled.setter
    def registration_enabled(self, enabled: bool) -> None:
        self._accounts.registration_enabled = enabled

    @property
    def public_base_url(self) -> str | None:
        return self._accounts.public_base_url

    @public_base_url.setter
    def public_base_url(self, url: str | None) -> None:
        self._accounts.public_base_url = url

    @property
    def users(self) -> dict[str, User]:
        return self._accounts.users

    @property
    def rooms(self) -> dict[str, Room]:
        return self._rooms.rooms

    @property
    def aliases(self) -> dict[str, str]:
        return self._rooms.aliases

    def now_ms(self) -> int:
        return self._ids.now_ms()

    def user_id_for(self, localpart: str) -> str:
        return self._accounts.user_id_for(localpart)

    # -- accounts

    def authenticate(self, token: str) -> tuple[User, str]:
        with self._lock:
            return self._accounts.authenticate(token)

    def username_available(self, username: str) -> bool:
        with self._lock:
            return self._accounts.username_available(username)

    def register(
        self, body: dict[str, Any], *, kind: str = "user", check_fields: Callable[[], None] = no_check
    ) -> dict[str, Any]:
        with self._lock:
            return self._accounts.register(body, kind=kind, check_fields=check_fields)

    def login(
        self,
        *,
        user: str,
        password: str,
        device_id: str | None = None,
        initial_device_display_name: str | None = None,
        check_device: Callable[[], None] = no_check,
    ) -> dict[str, Any]:
        with self._lock:
            return self._accounts.login(
                user=user,
                password=password,
                device_id=device_id,
                initial_device_display_name=initial_device_display_name,
                check_device=check_device,
            )

    def get_displayname(self, user_id: str) -> str | None:
        with self._lock:
            return self._accounts.get_displayname(user_id)

    def set_displayname(self, requester: User, user_id: str, displayname: str) -> None:
        with self._lock:
            self._accounts.set_displayname(requester, user_id, displayname)

    def admin_get_user(self, requester: User, user_id: str) -> dict[str, Any]:
        with self._lock:
            return self._accounts.admin_get_user(requester, user_id)

    def admin_put_user(
        self,
        requester: User,
        user_id: str,
        body: dict[str, Any],
        *,
        check_body: Callable[[], None] = no_check,
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self._accounts.admin_put_user(requester, user_id, body, check_body=check_body)

    def add_user(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
        check_name: bool = False,
    ) -> str:
        with self._lock:
            return self._accounts.add_user(
                localpart, password, admin=admin, displayname=displayname, check_name=check_name
            )

    def user_by_name(self, name: str) -> User:
        with self._lock:
            return self._accounts.user_by_name(name)

    # -- rooms

    def create_room(self, requester: User, body: dict[str, Any]) -> str:
        with self._lock:
            return self._rooms.create_room(requester, body)

    def resolve_room(self, room_id_or_alias: str, via: Sequence[str] = ()) -> str:
        with self._lock:
            return self._rooms.resolve_room(room_id_or_alias, via)

    def join(self, requester: User, room_id: str, reason: str | None = None) -> str:
        with self._lock:
            return self._rooms.join(requester, room_id, reason)

    def leave(self, requester: User, room_id: str, reason: Any = None) -> None:
        with self._lock:
            self._rooms.leave(requester, room_id, reason)

    def invite(self, requester: User, room_id: str, target: str, reason: str | None = None) -> None:
        with self._lock:
            self._rooms.invite(requester, room_id, target, reason)

    def joined_rooms(self, requester: User) -> list[str]:
        with self._lock:
            return self._rooms.joined_rooms(requester)

    def room_state(self, requester: User, room_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._rooms.room_state(requester, room_id)

    def state_event(
        self, requester: User, room_id: str, event_type: str, state_key: str, *, as_event: bool = False
    ) -> dict[str, Any]:
        with self._lock:
            return self._rooms.state_event(requester, room_id, event_type, state_key, as_event=as_event)

    def set_state(
        self, requester: User, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        with self._lock:
            return self._rooms.set_state(requester, room_id, event_type, state_key, content)

    def send_event(
        self,
        requester: User,
        device_id: str,
        room_id: str,
        event_type: str,
        txn_id: str,
        content: dict[str, Any],
    ) -> str:
        with self._lock:
            return self._rooms.send_event(requester, device_id, room_id, event_type, txn_id, content)

    # -- the message path: leave, logout, typing, receipts, read markers, joined members (issue 13)

    def logout(self, token: str) -> None:
        with self._lock:
            self._accounts.logout(token)

    def logout_all(self, requester: User) -> None:
        with self._lock:
            self._accounts.logout_all(requester)

    def joined_members(self, requester: User, room_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return self._rooms.joined_members(requester, room_id)

    def set_typing(
        self, requester: User, room_id: str, user_id: str, typing: bool, timeout: int | None = None
    ) -> None:
        with self._lock:
            self._ephemeral.set_typing(requester, room_id, user_id, typing, timeout)

    def typing_users(self, room_id: str) -> list[str]:
        with self._lock:
            return self._ephemeral.typing_users(room_id)

    def check_receipt_path(self, room_id: str, receipt_type: str, event_id: str) -> None:
        self._ephemeral.check_receipt_path(room_id, receipt_type, event_id)

    def post_receipt(
        self, requester: User, room_id: str, receipt_type: str, event_id: str, body: dict[str, Any]
    ) -> None:
        with self._lock:
            self._ephemeral.post_receipt(requester, room_id, receipt_type, event_id, body)

    def receipts(self, room_id: str) -> dict[ReceiptKey, Receipt]:
        with self._lock:
            return self._ephemeral.receipts(room_id)

    def set_read_markers(self, requester: User, room_id: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._ephemeral.set_read_markers(requester, room_id, body)

    def room_account_data(self, user_id: str, room_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return self._ephemeral.room_account_data(user_id, room_id)

    @property
    def ephemeral_stream(self) -> int:
        """The last position of the typing/receipt/account-data stream (what a /sync will compare)."""
        with self._lock:
            return self._ephemeral.stream

    # -- /sync and filters

    def create_filter(self, requester: User, user_id: str, definition: dict[str, Any]) -> str:
        with self._lock:
            return self._filters.create_filter(requester, user_id, definition)

    def get_filter(self, requester: User, user_id: str, filter_id: str) -> dict[str, Any]:
        with self._lock:
            return self._filters.get_filter(requester, user_id, filter_id)

    def sync_filter(self, requester: User, value: str | None) -> SyncFilter:
        with self._lock:
            return self._filters.sync_filter(requester, value)

    def sync(
        self,
        requester: User,
        since: str | None,
        sync_filter: SyncFilter,
        *,
        full_state: bool = False,
        presence: str | None = None,
        device_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The /sync answer and whether it has news (without news, an incremental sync may wait)."""
        with self._lock:
            answer = self._sync.sync(
                requester,
                since,
                sync_filter,
                full_state=full_state,
                presence=presence,
                device_id=device_id,
            )
            if answer[1]:
                self._synced.notify_all()
            return answer

    # -- acting as a human in a test, and reading what a client should see

    def act_send(self, user_id: str, room_id: str, content: dict[str, Any], event_type: str) -> str:
        """Send an event as `user_id` (a member), from a device of the mock's own."""
        with self._lock:
            user = self._accounts.users[user_id]
            self._txn_counter += 1
            txn = f"mockgen-{self._txn_counter}"
            return self._rooms.send_event(user, "MOCKGEN", room_id, event_type, txn, content)

    def act_typing(self, user_id: str, room_id: str, typing: bool, timeout: int | None = None) -> None:
        with self._lock:
            user = self._accounts.users[user_id]
            self._ephemeral.set_typing(user, room_id, user_id, typing, timeout)

    def timeline(self, room_id: str) -> list[dict[str, Any]]:
        """Every event of the room, oldest first, in the /messages format."""
        with self._lock:
            now = self._ids.now_ms()
            return [event.client_format(now) for event in self._rooms.rooms[room_id].timeline]

    def wait_synced(self, user_id: str, event_id: str, timeout: float) -> bool:
        """Block until a /sync has answered `user_id` with a `next_batch` at or past the event (False after
        `timeout` seconds)."""
        with self._lock:
            stream = next(
                (
                    e.stream
                    for room in self._rooms.rooms.values()
                    for e in room.timeline
                    if e.event_id == event_id
                ),
                None,
            )
            if stream is None:
                raise KeyError(event_id)
            return self._synced.wait_for(lambda: self._sync.synced.get(user_id, 0) >= stream, timeout)

    def messages(
        self,
        requester: User,
        room_id: str,
        *,
        direction: str,
        from_token: str | None,
        to_token: str | None,
        limit: int,
        types: tuple[str, ...] | None = None,
        not_types: tuple[str, ...] = (),
        lazy_load_members: bool = False,
    ) -> dict[str, Any]:
        with self._lock:
            return self._pagination.messages(
                requester,
                room_id,
                direction=direction,
                from_token=from_token,
                to_token=to_token,
                limit=limit,
                types=types,
                not_types=not_types,
                lazy_load_members=lazy_load_members,
            )

    @property
    def stream_position(self) -> int:
        with self._lock:
            return self._sync.position

    # -- inspection

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            rooms = self._rooms.snapshot()
            for room in rooms:
                room["typing"] = self._ephemeral.typing_users(room["room_id"])
            return {"server_name": self.server_name, "users": self._accounts.snapshot(), "rooms": rooms}
