"""Room state rules the differential cannot see (it compares statuses and errcodes): which createRoom
failures leave a room behind, what a txn id returns, the empty alias. Each as Synapse 1.163.2 answered it
(the probe ids are those of the issue 12 research)."""

from __future__ import annotations

from typing import Any

import pytest

from mockgen.store.errors import MatrixError
from mockgen.store.matrix import MatrixStore, User, errcodes


@pytest.fixture
def store() -> MatrixStore:
    store = MatrixStore("matrix.test", seed=1)
    store.add_user("alice", "pw")
    store.add_user("bob", "pw")
    return store


def _alice(store: MatrixStore) -> User:
    return store.user_by_name("alice")


def _refused(store: MatrixStore, body: dict[str, Any]) -> MatrixError:
    with pytest.raises(MatrixError) as refused:
        store.create_room(_alice(store), body)
    return refused.value


def test_inviting_the_creator_is_403_and_leaves_the_room_with_what_came_before(store: MatrixStore) -> None:
    # C01 C02: the invites come last, in the list's order; the room and the earlier invites stay.
    alice = _alice(store)
    error = _refused(store, {"name": "selfinv", "invite": ["@bob:matrix.test", "@alice:matrix.test"]})
    assert (error.status, error.errcode, error.error) == (
        403,
        errcodes.M_FORBIDDEN,
        "@alice:matrix.test is already in the room.",
    )
    [room] = store.joined_rooms(alice)
    assert store.state_event(alice, room, "m.room.name", "") == {"name": "selfinv"}
    assert store.rooms[room].membership("@alice:matrix.test") == "join"
    assert store.rooms[room].membership("@bob:matrix.test") == "invite"


def test_an_invitee_on_another_server_is_403_with_the_room_left(store: MatrixStore) -> None:
    # C04 (and C03: an unknown local user is fine).
    error = _refused(store, {"invite": ["@nobody:matrix.test", "@x:other.server"]})
    assert (error.status, error.error) == (403, "Federation denied with other.server.")
    [room] = store.joined_rooms(_alice(store))
    assert store.rooms[room].membership("@nobody:matrix.test") == "invite"
    assert store.rooms[room].membership("@x:other.server") is None


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"topic": 5, "name": 6}, errcodes.M_UNKNOWN),  # B76
        ({"power_level_content_override": {"ban": "x"}, "name": 5}, errcodes.M_BAD_JSON),  # B79
        ({"initial_state": [{"type": "m.room.name", "content": {}}]}, errcodes.M_UNKNOWN),
    ],
)
def test_what_is_checked_as_events_are_sent_fails_after_the_room_exists(
    store: MatrixStore, body: dict[str, Any], errcode: str
) -> None:
    assert (_refused(store, body).status, _refused(store, body).errcode) == (400, errcode)
    assert len(store.joined_rooms(_alice(store))) == 2


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"room_version": "99", "invite": ["notauser"]}, errcodes.M_UNSUPPORTED_ROOM_VERSION),  # B72
        ({"name": 5, "preset": "bogus"}, errcodes.M_BAD_JSON),  # B73
        ({"initial_state": [{"type": "x"}], "preset": "bogus"}, errcodes.M_BAD_JSON),  # B78
        ({"invite": ["notauser"], "room_alias_name": "pub"}, errcodes.M_ROOM_IN_USE),  # B74
        ({"invite": ["notauser"], "name": 5}, errcodes.M_UNKNOWN),
    ],
)
def test_what_is_checked_before_the_room_exists_wins_and_leaves_nothing(
    store: MatrixStore, body: dict[str, Any], errcode: str
) -> None:
    store.create_room(store.user_by_name("bob"), {"room_alias_name": "pub"})
    assert _refused(store, body).errcode == errcode
    assert store.joined_rooms(_alice(store)) == []


def test_an_empty_alias_name_is_the_alias_hash_colon_server(store: MatrixStore) -> None:
    # EA02 EA05 EA06 B89 X17
    alice = _alice(store)
    room = store.create_room(alice, {"room_alias_name": "", "preset": "public_chat"})
    assert store.state_event(alice, room, "m.room.canonical_alias", "") == {"alias": "#:matrix.test"}
    assert store.resolve_room("#:matrix.test") == room
    assert _refused(store, {"room_alias_name": ""}).errcode == errcodes.M_ROOM_IN_USE
    assert store.join(store.user_by_name("bob"), store.resolve_room("#:matrix.test")) == room


def test_a_txn_id_returns_the_first_event_whatever_the_type(store: MatrixStore) -> None:
    # C11 C16: the key is (user, device, room, txnId); C12: another room is another key.
    alice = _alice(store)
    room, other = store.create_room(alice, {}), store.create_room(alice, {})
    first = store.send_event(alice, "D", room, "m.room.message", "t", {"msgtype": "m.text", "body": "a"})
    length = len(store.rooms[room].timeline)
    assert store.send_event(alice, "D", room, "x.other", "t", {}) == first
    assert store.send_event(alice, "D", room, "m.room.topic", "t", {"topic": "state only"}) == first
    assert len(store.rooms[room].timeline) == length
    assert (
        store.send_event(alice, "D", other, "m.room.message", "t", {"msgtype": "m.text", "body": "a"})
        != first
    )


@pytest.mark.parametrize("event_type", ["m.room.create", "m.room.power_levels", "m.room.member"])
def test_send_refuses_what_synapse_cannot_send_and_stores_nothing(
    store: MatrixStore, event_type: str
) -> None:
    # B181-B183: Synapse answers 500; the mock 400 (documented), and nothing enters the room.
    alice = _alice(store)
    room = store.create_room(alice, {})
    length = len(store.rooms[room].timeline)
    with pytest.raises(MatrixError) as refused:
        store.send_event(alice, "D", room, event_type, "t", {"users_default": 100, "membership": "join"})
    assert (refused.value.status, refused.value.errcode) == (400, errcodes.M_UNKNOWN)
    assert len(store.rooms[room].timeline) == length


def test_send_checks_required_keys_before_canonical_json(store: MatrixStore) -> None:
    # B176 B191
    alice = _alice(store)
    room = store.create_room(alice, {})
    for content in ({"msgtype": "m.text", "f": 1.5}, {"msgtype": "m.text", "n": 2**60}):
        with pytest.raises(MatrixError) as refused:
            store.send_event(alice, "D", room, "m.room.message", "t", content)
        assert (refused.value.errcode, refused.value.error) == (errcodes.M_UNKNOWN, "'body' not in content")


def test_inviting_a_remote_user_is_403_after_the_inviters_own_checks(store: MatrixStore) -> None:
    # B118
    alice, bob = _alice(store), store.user_by_name("bob")
    room = store.create_room(alice, {})
    with pytest.raises(MatrixError) as outsider:
        store.invite(bob, room, "@x:other.server")
    assert outsider.value.error == f"@bob:matrix.test not in room {room}."
    with pytest.raises(MatrixError) as remote:
        store.invite(alice, room, "@x:other.server")
    assert (remote.value.status, remote.value.error) == (403, "Federation denied with other.server.")
    assert store.rooms[room].membership("@x:other.server") is None


@pytest.mark.parametrize(
    ("target", "via", "status", "error"),
    [
        ("#", (), 400, "# was not legal room ID or room alias"),  # B101
        ("#foo", (), 400, "#foo was not legal room ID or room alias"),  # B102
        ("!foo", (), 400, "!foo was not legal room ID or room alias"),  # B103
        ("#x:other.server", (), 502, "Failed to fetch alias"),  # B99
        ("!abc:other.server", ("other.server",), 502, "Failed to make_join via any server"),  # B100
        ("#nope:matrix.test", (), 404, "Room alias #nope:matrix.test not found"),
    ],
)
def test_join_targets_synapse_refuses(
    store: MatrixStore, target: str, via: tuple[str, ...], status: int, error: str
) -> None:
    with pytest.raises(MatrixError) as refused:
        store.resolve_room(target, via)
    assert (refused.value.status, refused.value.error) == (status, error)


def test_room_ids_without_a_server_are_legal_in_room_version_12(store: MatrixStore) -> None:
    room = store.create_room(_alice(store), {})
    assert ":" not in room
    assert store.resolve_room(room) == room
    assert store.resolve_room("!abc:matrix.test", ("matrix.test",)) == "!abc:matrix.test"
