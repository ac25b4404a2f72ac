"""The homeserver state store on its own: no HTTP, no Connexion."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

from contracts.specs import spec_path
from mockgen.store.errors import MatrixError, UserInteractiveAuthRequired
from mockgen.store.matrix import MatrixStore, User, errcodes


@pytest.fixture
def store() -> MatrixStore:
    store = MatrixStore("matrix.test", seed=1)
    store.add_user("admin", "pw", admin=True)
    store.add_user("alice", "pw")
    store.add_user("bob", "pw")
    return store


def _user(store: MatrixStore, name: str) -> User:
    return store.user_by_name(name)


def test_registration_needs_the_dummy_stage_and_keeps_the_session(store: MatrixStore) -> None:
    with pytest.raises(UserInteractiveAuthRequired) as first:
        store.register({"username": "Carol", "password": "secret"})
    session = first.value.body["session"]
    done = store.register({"auth": {"type": "m.login.dummy", "session": session}})
    assert done["user_id"] == "@carol:matrix.test"
    again = store.register({"auth": {"type": "m.login.dummy", "session": session}})
    assert again["user_id"] == done["user_id"]
    assert store.login(user="CAROL", password="secret")["user_id"] == "@carol:matrix.test"


@pytest.mark.parametrize(
    ("username", "errcode"),
    [
        ("alice", "M_USER_IN_USE"),
        ("bad name", "M_INVALID_USERNAME"),
        ("12345", "M_INVALID_USERNAME"),
        ("_x", "M_INVALID_USERNAME"),
    ],
)
def test_username_checks_come_before_the_auth_stage(store: MatrixStore, username: str, errcode: str) -> None:
    with pytest.raises(MatrixError) as refused:
        store.register({"username": username, "password": "p"})
    assert refused.value.errcode == errcode


def test_registration_without_username_picks_a_number(store: MatrixStore) -> None:
    first = store.register({"password": "p", "auth": {"type": "m.login.dummy"}})
    second = store.register({"password": "p", "auth": {"type": "m.login.dummy"}})
    assert (first["user_id"], second["user_id"]) == ("@1:matrix.test", "@2:matrix.test")


def test_inhibit_login_issues_no_token(store: MatrixStore) -> None:
    result = store.register(
        {"username": "quiet", "password": "p", "inhibit_login": True, "auth": {"type": "m.login.dummy"}}
    )
    assert result == {"user_id": "@quiet:matrix.test", "home_server": "matrix.test"}


def test_tokens_belong_to_devices(store: MatrixStore) -> None:
    first = store.login(user="alice", password="pw", device_id="PHONE")
    second = store.login(user="alice", password="pw", device_id="PHONE")
    assert store.authenticate(second["access_token"])[1] == "PHONE"
    # Synapse 1.163 keeps the device's earlier tokens valid when it logs in again (probes C19b, C72b).
    assert store.authenticate(first["access_token"])[1] == "PHONE"
    assert first["access_token"] != second["access_token"]
    # "" is a device id like any other (C73); only an absent one is generated.
    assert store.login(user="alice", password="pw", device_id="")["device_id"] == ""
    store.admin_put_user(_user(store, "admin"), "@alice:matrix.test", {"password": "pw"})
    with pytest.raises(MatrixError) as revoked:
        store.authenticate(first["access_token"])
    assert (revoked.value.status, revoked.value.errcode, revoked.value.extra) == (
        401,
        "M_UNKNOWN_TOKEN",
        {"soft_logout": False},
    )


def test_private_room_membership_and_power_levels(store: MatrixStore) -> None:
    alice, bob, admin = _user(store, "alice"), _user(store, "bob"), _user(store, "admin")
    room = store.create_room(alice, {"preset": "private_chat", "invite": [bob.user_id]})
    assert not room.endswith(":matrix.test")
    assert len(room) == 44
    with pytest.raises(MatrixError, match="not invited"):
        store.join(admin, room)
    assert store.join(bob, room) == room
    assert store.join(bob, room) == room
    with pytest.raises(MatrixError, match=r"user_level \(0\) < send_level \(50\)"):
        store.set_state(bob, room, "m.room.name", "", {"name": "mine"})
    first = store.set_state(alice, room, "m.room.name", "", {"name": "A"})
    assert store.set_state(alice, room, "m.room.name", "", {"name": "A"}) == first
    assert store.set_state(alice, room, "m.room.name", "", {"name": "B"}) != first
    levels = store.state_event(alice, room, "m.room.power_levels", "")
    assert levels["users"] == {}
    assert levels["invite"] == 0
    assert levels["events"]["m.room.tombstone"] == 150


def test_trusted_private_chat_makes_invitees_creators_in_v12(store: MatrixStore) -> None:
    alice, bob = _user(store, "alice"), _user(store, "bob")
    room = store.create_room(alice, {"preset": "trusted_private_chat", "invite": [bob.user_id]})
    assert store.state_event(alice, room, "m.room.create", "")["additional_creators"] == [bob.user_id]
    store.join(bob, room)
    assert store.set_state(bob, room, "m.room.name", "", {"name": "ok"}).startswith("$")


def test_older_room_versions_list_the_creator(store: MatrixStore) -> None:
    alice = _user(store, "alice")
    room = store.create_room(alice, {"room_version": "10"})
    assert room.endswith(":matrix.test")
    assert store.state_event(alice, room, "m.room.power_levels", "")["users"] == {alice.user_id: 100}
    assert store.state_event(alice, room, "m.room.create", "")["creator"] == alice.user_id


def test_visibility_other_than_private_selects_public_chat(store: MatrixStore) -> None:
    alice, bob = _user(store, "alice"), _user(store, "bob")
    room = store.create_room(alice, {"visibility": "bogus"})
    assert store.join(bob, room) == room


def test_space_children_and_parents(store: MatrixStore) -> None:
    admin, alice = _user(store, "admin"), _user(store, "alice")
    space = store.create_room(admin, {"creation_content": {"type": "m.space"}, "name": "Space"})
    room = store.create_room(alice, {"invite": [admin.user_id]})
    store.set_state(admin, space, "m.space.child", room, {"via": ["matrix.test"]})
    store.set_state(alice, room, "m.space.parent", space, {"via": ["matrix.test"], "canonical": True})
    rooms = {r["room_id"]: r for r in store.snapshot()["rooms"]}
    assert rooms[space]["is_space"]
    assert rooms[space]["children"] == [room]
    assert rooms[room]["parents"] == [space]


@pytest.mark.parametrize(
    ("content", "counts"),
    [
        ({"via": ["matrix.test"]}, True),
        ({"via": ["matrix.test", "other.test"], "suggested": True}, True),
        ({}, False),  # how a link is removed
        ({"suggested": True}, False),
        ({"via": []}, False),
        ({"via": "matrix.test"}, False),
        ({"via": ["matrix.test", 5]}, False),
    ],
)
def test_a_space_link_counts_only_with_servers_to_join_through(
    store: MatrixStore, content: dict[str, Any], counts: bool
) -> None:
    admin = _user(store, "admin")
    space = store.create_room(admin, {"creation_content": {"type": "m.space"}})
    room = store.create_room(admin, {})
    store.set_state(admin, space, "m.space.child", room, content)
    store.set_state(admin, room, "m.space.parent", space, content)
    rooms = {r["room_id"]: r for r in store.snapshot()["rooms"]}
    assert rooms[space]["children"] == ([room] if counts else [])
    assert rooms[room]["parents"] == ([space] if counts else [])


def test_who_left_reads_the_state_as_it_was_when_they_left(store: MatrixStore) -> None:
    alice, bob = _user(store, "alice"), _user(store, "bob")
    room = store.create_room(alice, {"name": "Before", "invite": [bob.user_id]})
    store.join(bob, room)
    store.leave(bob, room)
    store.set_state(alice, room, "m.room.name", "", {"name": "After"})
    store.set_state(alice, room, "m.room.topic", "", {"topic": "new"})
    assert store.state_event(bob, room, "m.room.name", "") == {"name": "Before"}
    assert store.state_event(bob, room, "m.room.member", bob.user_id)["membership"] == "leave"
    with pytest.raises(MatrixError) as missing:
        store.state_event(bob, room, "m.room.topic", "")  # set after bob left
    assert (missing.value.status, missing.value.errcode) == (404, "M_NOT_FOUND")
    names = [e["content"]["name"] for e in store.room_state(bob, room) if e["type"] == "m.room.name"]
    assert names == ["Before"]
    assert store.state_event(alice, room, "m.room.name", "") == {"name": "After"}
    # Leaving is not membership: bob may read but no longer act.
    with pytest.raises(MatrixError, match="not in room"):
        store.set_state(bob, room, "m.room.name", "", {"name": "mine"})
    assert room not in store.joined_rooms(bob)


@pytest.mark.parametrize("how", ["never", "invited", "unknown room"])
def test_who_never_was_in_the_room_reads_nothing(store: MatrixStore, how: str) -> None:
    alice, bob = _user(store, "alice"), _user(store, "bob")
    room = store.create_room(alice, {"invite": [bob.user_id] if how == "invited" else []})
    target = "!unknown" if how == "unknown room" else room
    for read in (
        lambda: store.state_event(bob, target, "m.room.create", ""),
        lambda: store.room_state(bob, target),
    ):
        with pytest.raises(MatrixError) as refused:
            read()
        assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
        assert "room previews are disabled" in refused.value.error


def test_transaction_ids_are_per_device(store: MatrixStore) -> None:
    alice = _user(store, "alice")
    room = store.create_room(alice, {})
    phone = store.send_event(alice, "PHONE", room, "m.room.message", "t1", {"msgtype": "m.text", "body": "a"})
    again = store.send_event(
        alice, "PHONE", room, "m.room.message", "t1", {"msgtype": "m.text", "body": "changed"}
    )
    laptop = store.send_event(
        alice, "LAPTOP", room, "m.room.message", "t1", {"msgtype": "m.text", "body": "a"}
    )
    assert phone == again != laptop


BIG = 2**53  # one past canonical JSON's largest integer


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ({"n": BIG}, "JSON integer out of range"),
        ({"a": [{"n": -BIG}]}, "JSON integer out of range"),
        ({"f": 1.0}, "Bad JSON value: float"),
    ],
)
def test_events_must_be_canonical_json_from_room_version_6(
    store: MatrixStore, content: dict[str, Any], error: str
) -> None:
    alice = _user(store, "alice")
    room = store.create_room(alice, {})
    message = {"msgtype": "m.text", "body": "x", **content}
    member = {"membership": "join", **content}
    attempts: list[Callable[[], object]] = [
        lambda: store.send_event(alice, "D", room, "m.room.message", "t", message),
        lambda: store.set_state(alice, room, "x.y", "", content),
        lambda: store.set_state(alice, room, "m.room.member", alice.user_id, member),
        lambda: store.create_room(alice, {"creation_content": content}),
        lambda: store.create_room(alice, {"initial_state": [{"type": "x.y", "content": content}]}),
    ]
    for attempt in attempts:
        with pytest.raises(MatrixError) as refused:
            attempt()
        answer = (refused.value.status, refused.value.errcode, refused.value.error)
        assert answer == (400, "M_BAD_JSON", error)
    # At the edge of the range, and in a room version before 6, the same content is fine.
    edge = {"msgtype": "m.text", "body": "x", "n": BIG - 1, "m": -(BIG - 1)}
    assert store.send_event(alice, "D", room, "m.room.message", "edge", edge)
    assert store.create_room(alice, {"room_version": "5", "creation_content": content})


def test_admin_api(store: MatrixStore) -> None:
    admin, alice = _user(store, "admin"), _user(store, "alice")
    status, created = store.admin_put_user(
        admin, "@dave:matrix.test", {"password": "pw", "displayname": "Dave"}
    )
    assert (status, created["name"], created["displayname"]) == (201, "@dave:matrix.test", "Dave")
    status, _ = store.admin_put_user(admin, "@dave:matrix.test", {"displayname": "D"})
    assert status == 200
    assert store.get_displayname("@dave:matrix.test") == "D"
    with pytest.raises(MatrixError, match="not a server admin"):
        store.admin_put_user(alice, "@eve:matrix.test", {})
    store.admin_put_user(admin, "@dave:matrix.test", {"deactivated": True})
    with pytest.raises(MatrixError, match="Invalid username or password"):
        store.login(user="dave", password="pw")


def test_concurrent_registration_of_one_name_admits_one(store: MatrixStore) -> None:
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            store.register({"username": "racer", "password": "p", "auth": {"type": "m.login.dummy"}})
            outcomes.append("ok")
        except MatrixError as exc:
            outcomes.append(exc.errcode)

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(outcomes) == ["M_USER_IN_USE"] * 49 + ["ok"]


def test_initial_state_may_not_hold_a_create_event(store: MatrixStore) -> None:
    alice = _user(store, "alice")
    with pytest.raises(MatrixError) as refused:
        store.create_room(
            alice, {"initial_state": [{"type": "m.room.create", "content": {"m.federate": False}}]}
        )
    assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")
    assert store.rooms == {}
    assert store.joined_rooms(alice) == []


def test_member_state_is_a_membership_change_as_on_synapse(store: MatrixStore) -> None:
    alice, bob = _user(store, "alice"), _user(store, "bob")
    room = store.create_room(alice, {"invite": [bob.user_id]})
    store.join(bob, room)

    def put(who: User, target: User, content: dict[str, Any]) -> str:
        return store.set_state(who, room, "m.room.member", target.user_id, content)

    renamed = put(bob, bob, {"membership": "join", "displayname": "Bobby"})
    assert put(bob, bob, {"membership": "join", "displayname": "Bobby"}) == renamed  # identical: same event
    assert put(bob, bob, {"membership": "join"}) != renamed  # the profile's name again: a new event
    for content, message in (
        ({"membership": "leave"}, "You cannot kick user"),
        ({"membership": "ban"}, "ban"),
    ):
        with pytest.raises(MatrixError, match=message):
            put(bob, alice, content)
    put(alice, bob, {"membership": "leave", "reason": "bye"})
    assert store.state_event(alice, room, "m.room.member", bob.user_id) == {
        "membership": "leave",
        "reason": "bye",
    }
    put(alice, bob, {"membership": "ban"})
    with pytest.raises(MatrixError) as banned:
        store.join(bob, room)
    assert (banned.value.status, banned.value.errcode) == (403, "M_BAD_STATE")


def test_a_locked_account_is_refused_with_soft_logout(store: MatrixStore) -> None:
    token = store.login(user="bob", password="pw")["access_token"]
    store.admin_put_user(_user(store, "admin"), "@bob:matrix.test", {"locked": True})
    for attempt in (lambda: store.authenticate(token), lambda: store.login(user="bob", password="pw")):
        with pytest.raises(MatrixError) as locked:
            attempt()
        assert locked.value.body() == {
            "errcode": "M_USER_LOCKED",
            "error": "User account has been locked",
            "soft_logout": True,
        }


def test_the_named_errcodes_are_the_ones_the_contract_documents() -> None:
    documented = set(re.findall(r"\bM_[A-Z_]+\b", spec_path("matrix").read_text(encoding="utf-8")))
    named = {name: value for name, value in vars(errcodes).items() if name.startswith("M_")}
    assert set(named) == documented
    assert all(value == name for name, value in named.items())


def test_profiles_as_synapse_keeps_them(store: MatrixStore) -> None:
    """Probes C48b, X14 (whitespace stripped, "   " kept as ""), C49e (the server name compared exactly),
    B62/C46 (an admin names a local user who has no account), B59/C49d (remote PUT)."""
    alice, admin = _user(store, "alice"), _user(store, "admin")
    store.set_displayname(alice, alice.user_id, "  padded  ")
    assert store.get_displayname(alice.user_id) == "padded"
    store.set_displayname(alice, alice.user_id, "   ")
    assert store.get_displayname(alice.user_id) == ""
    store.set_displayname(alice, alice.user_id, "")
    assert store.get_displayname(alice.user_id) is None
    with pytest.raises(MatrixError) as remote:
        store.get_displayname("@alice:MATRIX.TEST")
    assert (remote.value.status, remote.value.errcode, remote.value.error) == (
        403,
        "M_FORBIDDEN",
        "Federation denied with MATRIX.TEST.",
    )
    with pytest.raises(MatrixError) as not_hosted:
        store.set_displayname(admin, "@alice:MATRIX.TEST", "x")
    assert (not_hosted.value.status, not_hosted.value.errcode) == (400, "M_UNKNOWN")
    with pytest.raises(MatrixError) as ghost:
        store.get_displayname("@ghost:matrix.test")
    assert ghost.value.status == 404
    store.set_displayname(admin, "@ghost:matrix.test", " Ghost ")
    assert store.get_displayname("@ghost:matrix.test") == "Ghost"
    with pytest.raises(MatrixError, match="another user"):
        store.set_displayname(alice, "@ghost2:matrix.test", "x")
