"""Whose long-polls a change wakes — as Synapse's notifier decides: the room's joined members, and the user a
member event is about — and what an incremental /sync then reads: its user's rooms, and in them the events
after `since`, not every room of the homeserver nor whole timelines (a long-poll woken by each event of its
rooms would pay for those each time). Checked by what the store tells its waiters and what it reads, never
by time; the answers themselves are the other sync tests'."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from mockgen.store.matrix import MatrixStore, Room, User
from mockgen.store.matrix import sync as sync_module
from mockgen.store.matrix.filters import SyncFilter
from mockgen.store.matrix.visibility import visible

ALICE, BOB, CAROL = "@alice:matrix.test", "@bob:matrix.test", "@carol:matrix.test"


@pytest.fixture
def store() -> MatrixStore:
    store = MatrixStore("matrix.test", seed=1)
    for name in ("alice", "bob", "carol"):
        store.add_user(name, "pw", displayname=name.title())
    return store


def _user(store: MatrixStore, user_id: str) -> User:
    return store.users[user_id]


def _room(store: MatrixStore, creator: str, *members: str) -> str:
    room_id = store.create_room(_user(store, creator), {"preset": "public_chat"})
    for member in members:
        store.join(_user(store, member), room_id)
    return room_id


def _send(store: MatrixStore, sender: str, room_id: str, body: str) -> str:
    return store.act_send(sender, room_id, {"msgtype": "m.text", "body": body}, "m.room.message")


def _sync(store: MatrixStore, user_id: str, since: str | None = None) -> dict[str, Any]:
    answer, _ = store.sync(_user(store, user_id), since, SyncFilter())
    return answer


def _bodies(entry: dict[str, Any]) -> list[str]:
    return [e["content"].get("body") for e in entry["timeline"]["events"] if e["type"] == "m.room.message"]


def test_a_change_wakes_the_joined_members_and_whom_a_member_event_is_about(store: MatrixStore) -> None:
    woken: list[set[str] | None] = []

    def changed(audience: Iterable[str] | None) -> None:
        woken.append(None if audience is None else set(audience))

    store.on_change(changed)
    room_id = _room(store, ALICE, BOB)
    store.invite(_user(store, ALICE), room_id, CAROL)
    assert woken[-1] == {ALICE, BOB, CAROL}  # the invitee, though not joined
    _send(store, ALICE, room_id, "while carol is invited")
    assert woken[-1] == {ALICE, BOB}
    store.leave(_user(store, BOB), room_id)
    assert woken[-1] == {ALICE, BOB}  # the leave is news to bob
    store.set_state(_user(store, ALICE), room_id, "m.room.member", CAROL, {"membership": "leave"})
    assert woken[-1] == {ALICE, CAROL}  # so is a withdrawn invite to carol
    _send(store, ALICE, room_id, "after they went")
    assert woken[-1] == {ALICE}
    store.set_typing(_user(store, ALICE), room_id, ALICE, True, 30000)
    assert woken[-1] == {ALICE}
    other = _room(store, CAROL)
    _send(store, CAROL, other, "elsewhere")
    assert woken[-1] == {CAROL}
    assert None not in woken  # nothing but a reset or a stop wakes everyone


def test_an_incremental_sync_reads_only_the_rooms_of_its_user(
    store: MatrixStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = _room(store, ALICE, BOB)
    others = {_room(store, CAROL) for _ in range(3)}
    since = _sync(store, ALICE)["next_batch"]
    _send(store, BOB, ours, "hello")
    read: set[str] = set()
    members, membership = Room.members, Room.membership

    def spy_members(room: Room) -> dict[str, str]:
        read.add(room.room_id)
        return members(room)

    def spy_membership(room: Room, user_id: str) -> str | None:
        read.add(room.room_id)
        return membership(room, user_id)

    monkeypatch.setattr(Room, "members", spy_members)
    monkeypatch.setattr(Room, "membership", spy_membership)
    answer = _sync(store, ALICE, since)
    assert _bodies(answer["rooms"]["join"][ours]) == ["hello"]
    assert ours in read
    assert not read & others


def test_a_member_since_before_the_window_is_not_walked_for_history_visibility(
    store: MatrixStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    room_id = _room(store, ALICE, BOB)
    since = _sync(store, ALICE)["next_batch"]
    walked: list[str] = []

    def spy(room: Room, user_id: str, *, peeking: bool = False) -> dict[str, bool]:
        walked.append(user_id)
        return visible(room, user_id, peeking=peeking)

    monkeypatch.setattr(sync_module, "visible", spy)
    _send(store, BOB, room_id, "one")
    answer = _sync(store, ALICE, since)
    assert _bodies(answer["rooms"]["join"][room_id]) == ["one"]
    assert answer["rooms"]["join"][room_id]["timeline"]["events"][0]["unsigned"]["membership"] == "join"
    assert walked == []
    # Carol joins within the window of her sync: her history needs the walk, and gets it.
    carol_since = _sync(store, CAROL)["next_batch"]
    store.join(_user(store, CAROL), room_id)
    _send(store, BOB, room_id, "two")
    joined = _sync(store, CAROL, carol_since)["rooms"]["join"][room_id]
    assert _bodies(joined) == ["one", "two"]
    assert walked == [CAROL]


def test_unread_counts_carry_on_from_one_sync_to_the_next(store: MatrixStore) -> None:
    room_id = _room(store, ALICE, BOB)

    def unread(since: str | None) -> tuple[dict[str, int], str]:
        answer = _sync(store, ALICE, since)
        return answer["rooms"]["join"][room_id]["unread_notifications"], answer["next_batch"]

    counts, since = unread(None)
    assert counts == {"notification_count": 0, "highlight_count": 0}
    _send(store, BOB, room_id, "hi")
    _send(store, BOB, room_id, "hi Alice")
    counts, since = unread(since)
    assert counts == {"notification_count": 2, "highlight_count": 1}
    _send(store, ALICE, room_id, "my own")
    last = _send(store, BOB, room_id, "one more")
    counts, since = unread(since)
    assert counts == {"notification_count": 3, "highlight_count": 1}
    # A read receipt moves the read point: counted afresh from it.
    store.post_receipt(_user(store, ALICE), room_id, "m.read", last, {})
    counts, since = unread(since)
    assert counts == {"notification_count": 0, "highlight_count": 0}
    _send(store, BOB, room_id, "hey Alicia")
    counts, since = unread(since)
    assert counts == {"notification_count": 1, "highlight_count": 0}
    # A new display name is a new member event, a read point too; it highlights from then on.
    store.set_displayname(_user(store, ALICE), ALICE, "Alicia")
    counts, since = unread(since)
    assert counts == {"notification_count": 0, "highlight_count": 0}
    _send(store, BOB, room_id, "hey Alicia")
    counts, _ = unread(since)
    assert counts == {"notification_count": 1, "highlight_count": 1}


def test_a_sync_lists_its_rooms_in_creation_order_whatever_the_order_of_joining(store: MatrixStore) -> None:
    first, second = _room(store, BOB), _room(store, BOB)
    store.join(_user(store, ALICE), second)
    store.join(_user(store, ALICE), first)
    left = _room(store, BOB, ALICE)
    store.leave(_user(store, ALICE), left)
    invited = _room(store, BOB)
    store.invite(_user(store, BOB), invited, ALICE)
    answer = _sync(store, ALICE)
    assert list(answer["rooms"]["join"]) == [first, second]
    assert list(answer["rooms"]["invite"]) == [invited]
    assert "leave" not in answer["rooms"]  # an initial sync without include_leave


def test_a_quiet_room_is_passed_over_and_a_room_with_only_ephemeral_news_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    store = MatrixStore("matrix.test", seed=1, clock=lambda: now[0])
    for name in ("alice", "bob"):
        store.add_user(name, "pw")
    quiet, receipt, marker, typing, expiring = (_room(store, ALICE, BOB) for _ in range(5))
    said = {room_id: _send(store, BOB, room_id, "before") for room_id in (quiet, receipt, marker)}
    store.set_typing(_user(store, BOB), expiring, BOB, True, 1000)
    since = _sync(store, ALICE)["next_batch"]
    store.post_receipt(_user(store, BOB), receipt, "m.read", said[receipt], {})
    store.set_read_markers(_user(store, ALICE), marker, {"m.fully_read": said[marker]})
    store.set_typing(_user(store, BOB), typing, BOB, True, 30000)
    now[0] += 2  # the notice in `expiring` runs out; reading it is the news
    read: list[str] = []
    joined = sync_module.Sync._joined

    def spy(self: sync_module.Sync, room: Room, *args: Any) -> dict[str, Any] | None:
        read.append(room.room_id)
        return joined(self, room, *args)

    monkeypatch.setattr(sync_module.Sync, "_joined", spy)
    rooms = _sync(store, ALICE, since)["rooms"]["join"]
    assert set(rooms) == set(read) == {receipt, marker, typing, expiring}
    assert [e["type"] for e in rooms[receipt]["ephemeral"]["events"]] == ["m.receipt"]
    assert rooms[marker]["account_data"]["events"][0]["type"] == "m.fully_read"
    assert rooms[typing]["ephemeral"]["events"] == [{"type": "m.typing", "content": {"user_ids": [BOB]}}]
    assert rooms[expiring]["ephemeral"]["events"] == [{"type": "m.typing", "content": {"user_ids": []}}]
