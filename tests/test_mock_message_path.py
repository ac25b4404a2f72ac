"""The message path without /sync: leave, logout, logout/all, typing and joined members (receipts and read
markers: test_mock_receipts.py), over HTTP against the mock, with the statuses, errcodes, texts and error
precedence Synapse 1.163 answers (the issue 13 probes of real Synapse 1.163.2; probe numbers in the
comments), and what each one leaves in the store for a later /sync."""

from __future__ import annotations

import aiohttp
import pytest

from contracts.validation import validator_for
from mockgen.pytest_plugin import MatrixMock
from mockgen.store.matrix import MatrixStore
from tests.room_support import V12_UNKNOWN, Room, answered, three_member_room
from tests.support import call, login

pytestmark = pytest.mark.mock_lenient  # many requests here are bad on purpose


@pytest.fixture
async def room(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Room:
    return await three_member_room(http, matrix_mock)


# -- leave


async def test_leave_changes_membership_and_what_later_calls_see(room: Room) -> None:
    r, bob_id = room, "@b:matrix.test"
    leave = f"/rooms/{r.room_id}/leave"
    answered(await r.req("POST", leave, r.bob, {}), 200)
    answered(await r.req("POST", leave, r.bob, {}), 200)  # the same leave again [4.2]
    assert r.store.rooms[r.room_id].membership(bob_id) == "leave"
    not_in = f"User {bob_id} not in room {r.room_id}"
    answered(await r.send(r.bob, "after"), 403, "M_FORBIDDEN", not_in)  # 4.19
    typing = {"typing": True, "timeout": 1000}
    answered(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/{bob_id}", r.bob, typing), 403, "M_FORBIDDEN", not_in
    )
    answered(
        await r.req("GET", f"/rooms/{r.room_id}/joined_members", r.bob),
        403,
        "M_FORBIDDEN",
        "Getting joined members while not being a current member of the room is forbidden.",
    )  # 4.21
    assert (await r.req("GET", "/joined_rooms", r.bob)).body == {"joined_rooms": []}  # 4.27
    members = (await r.req("GET", f"/rooms/{r.room_id}/joined_members", r.alice)).body["joined"]
    assert set(members) == {"@a:matrix.test"}
    # A leave with another content by someone no longer in the room [4.13]
    answered(
        await r.req("POST", leave, r.bob, {"reason": "x"}),
        403,
        "M_FORBIDDEN",
        f"{bob_id} not in room {r.room_id}.",
    )
    # A receipt on an event from before the leave is still fine [4.23]
    answered(await r.req("POST", f"/rooms/{r.room_id}/receipt/m.read/{r.e2}", r.bob, {}), 200)
    # Joining again works (the room still has a member), then a leave with any reason, or no body at all
    assert (await r.req("POST", f"/join/{r.room_id}", r.bob, {})).status == 200
    answered(await r.req("POST", leave, r.bob, {"reason": 5}), 200)  # 4.12
    assert r.store.rooms[r.room_id].content("m.room.member", bob_id) == {"membership": "leave", "reason": 5}
    assert (await r.req("POST", f"/join/{r.room_id}", r.bob, {})).status == 200
    answered(await r.req("POST", leave, r.bob, data=b""), 200)  # 4.9


async def test_leave_errors_in_synapse_order(room: Room) -> None:
    r = room
    leave = f"/rooms/{r.room_id}/leave"
    carol = "@c:matrix.test"
    answered(await r.req("POST", leave, r.carol, {}), 403, "M_FORBIDDEN", f"{carol} not in room {r.room_id}.")
    for unknown in ("!doesnotexist00000000000000000000000000000000", "!nope:matrix.test", "garbage"):
        answered(
            await r.req("POST", f"/rooms/{unknown}/leave", r.bob, {}), 404, "M_UNKNOWN", "Not a known room"
        )
    answered(await r.req("POST", leave, r.bob, data=b"{"), 400, "M_NOT_JSON")
    answered(await r.req("POST", leave, r.bob, data=b"[]"), 400, "M_BAD_JSON")
    answered(await r.req("POST", leave, None, {}), 401, "M_MISSING_TOKEN")
    answered(await r.req("POST", leave, "syt_never_issued", {}), 401, "M_UNKNOWN_TOKEN")
    # body JSON before the room and the membership [4.30, 4.31]; the token before the body [4.32]
    answered(await r.req("POST", f"/rooms/{V12_UNKNOWN}/leave", r.bob, data=b"{"), 400, "M_NOT_JSON")
    answered(await r.req("POST", leave, r.carol, data=b"{"), 400, "M_NOT_JSON")
    answered(await r.req("POST", leave, None, data=b"{"), 401, "M_MISSING_TOKEN")
    answered(await r.req("POST", leave, r.bob, {"reason": "x" * 70_000}), 413, "M_TOO_LARGE")


async def test_refusing_an_invite_and_the_last_member_leaving(room: Room) -> None:
    r = room
    private = (await r.req("POST", "/createRoom", r.alice, {"invite": ["@c:matrix.test"]})).body["room_id"]
    answered(await r.req("POST", f"/rooms/{private}/leave", r.carol, {}), 200)  # 4.15
    assert r.store.rooms[private].membership("@c:matrix.test") == "leave"
    solo = (await r.req("POST", "/createRoom", r.carol, {"preset": "public_chat"})).body["room_id"]
    answered(await r.req("POST", f"/rooms/{solo}/leave", r.carol, {}), 200)  # 4.16
    again = await r.req("POST", f"/join/{solo}", r.carol, {})
    answered(
        again,
        404,
        "M_UNKNOWN",
        "Can't join remote room because no servers that are in the room have been provided.",
    )  # 4.17


# -- logout


async def test_logout_kills_the_token_and_its_device_only(room: Room) -> None:
    r = room
    second = await login(r.http, r.mock.url, "b")
    assert len(r.store.users["@b:matrix.test"].devices) == 2
    answered(await r.req("POST", "/logout", r.bob, {}), 200)
    dead = await r.req("GET", "/account/whoami", r.bob)
    answered(dead, 401, "M_UNKNOWN_TOKEN", "Invalid access token passed.")
    assert dead.body["soft_logout"] is False
    answered(await r.req("POST", "/logout", r.bob, {}), 401, "M_UNKNOWN_TOKEN")  # 5.4
    assert (await r.req("GET", "/account/whoami", second)).status == 200  # 5.5
    assert len(r.store.users["@b:matrix.test"].devices) == 1  # 5.6
    answered(await r.req("POST", "/logout", None, {}), 401, "M_MISSING_TOKEN")
    # The body is never read [5.8]; nio passes the token as ?access_token= [5.13]
    answer = await call(r.http, "POST", f"{r.base}/logout", data=b"{", params={"access_token": second})
    answered(answer, 200)
    assert r.store.users["@b:matrix.test"].devices == {}


async def test_logout_all_kills_every_device_then_a_login_works(room: Room) -> None:
    r = room
    tokens = [r.alice, await login(r.http, r.mock.url, "a"), await login(r.http, r.mock.url, "a")]
    answered(await r.req("POST", "/logout/all", tokens[1], {}), 200)
    for token in tokens:
        answered(await r.req("GET", "/account/whoami", token), 401, "M_UNKNOWN_TOKEN")
    answered(await r.req("POST", "/logout/all", tokens[0], {}), 401, "M_UNKNOWN_TOKEN")  # 5.22
    answered(await r.req("POST", "/logout/all", None, {}), 401, "M_MISSING_TOKEN")
    fresh = await login(r.http, r.mock.url, "a")
    assert len(r.store.users["@a:matrix.test"].devices) == 1
    answer = await call(r.http, "POST", f"{r.mock.url}/_matrix/client/r0/logout/all", token=fresh)
    answered(answer, 200)


# -- typing


async def test_typing_is_stored_and_stopped(room: Room) -> None:
    r, bob = room, "@b:matrix.test"
    path = f"/rooms/{r.room_id}/typing/{bob}"
    answered(await r.req("PUT", path, r.bob, {"typing": True, "timeout": 30000}), 200)
    assert r.store.typing_users(r.room_id) == [bob]
    stream = r.store.ephemeral_stream
    answered(await r.req("PUT", path, r.bob, {"typing": True, "timeout": 30000}), 200)
    assert r.store.ephemeral_stream == stream  # a refresh is no news
    answered(await r.req("PUT", path, r.bob, {"typing": False}), 200)
    assert r.store.typing_users(r.room_id) == []
    answered(await r.req("PUT", path, r.bob, {"typing": "yes"}), 200)  # truthiness [6.20]
    assert r.store.typing_users(r.room_id) == [bob]
    answered(await r.req("PUT", path, r.bob, {"typing": 0}), 200)  # 6.21
    assert r.store.typing_users(r.room_id) == []
    answer = await call(
        r.http, "PUT", f"{r.mock.url}/_matrix/client/r0{path}", token=r.bob, json_body={"typing": False}
    )
    answered(answer, 200)


async def test_typing_errors_in_synapse_order(room: Room) -> None:
    r, bob, carol = room, "@b:matrix.test", "@c:matrix.test"
    other = "Cannot set another user's typing state"
    on = {"typing": True, "timeout": 1000}
    answered(await r.req("PUT", f"/rooms/{r.room_id}/typing/{bob}", r.alice, on), 400, "M_FORBIDDEN", other)
    answered(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/{bob}", r.carol, on), 400, "M_FORBIDDEN", other
    )  # 6.32
    answered(await r.req("PUT", f"/rooms/{V12_UNKNOWN}/typing/{bob}", r.alice, on), 400, "M_FORBIDDEN", other)
    not_in = f"User {carol} not in room {r.room_id}"
    answered(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/{carol}", r.carol, on), 403, "M_FORBIDDEN", not_in
    )
    answered(
        await r.req("PUT", f"/rooms/{V12_UNKNOWN}/typing/{bob}", r.bob, on),
        403,
        "M_FORBIDDEN",
        f"User {bob} not in room {V12_UNKNOWN}",
    )  # 6.18
    path = f"/rooms/{r.room_id}/typing/{bob}"
    answered(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/bob", r.bob, on),
        400,
        "M_INVALID_PARAM",
        "Expected UserID string to start with '@'",
    )  # 6.26
    answered(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/bob", r.bob, data=b"{"), 400, "M_INVALID_PARAM"
    )  # the path before the body
    answered(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/@x:other.test", r.bob, on),
        400,
        "M_UNKNOWN",
        "User is not hosted on this homeserver",
    )  # 6.27
    answered(await r.req("PUT", path, r.bob, data=b""), 400, "M_NOT_JSON")  # 6.24
    answered(await r.req("PUT", path, r.bob, data=b"{"), 400, "M_NOT_JSON")
    answered(await r.req("PUT", path, r.bob, data=b"[]"), 400, "M_BAD_JSON")
    answered(await r.req("PUT", path, r.alice, data=b"{"), 400, "M_NOT_JSON")  # 6.33
    # Synapse answers these two with 500 (x-server-answers-500); the contract and the mock say 400
    answered(await r.req("PUT", path, r.bob, {"timeout": 1000}), 400, "M_MISSING_PARAM")
    answered(await r.req("PUT", path, r.bob, {"typing": True, "timeout": "x"}), 400, "M_BAD_JSON")
    answered(await r.req("PUT", path, None, on), 401, "M_MISSING_TOKEN")
    answered(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/bob", "syt_bad", on), 401, "M_UNKNOWN_TOKEN"
    )  # 6.36
    assert r.store.typing_users(r.room_id) == []


def test_typing_expires_default_and_cap() -> None:
    now = [1000.0]
    store = MatrixStore(clock=lambda: now[0])
    store.add_user("u", "pw")
    user = store.user_by_name("u")
    room = store.create_room(user, {})
    store.set_typing(user, room, user.user_id, True, 1500)
    now[0] += 1.4
    assert store.typing_users(room) == [user.user_id]
    now[0] += 0.2
    assert store.typing_users(room) == []
    store.set_typing(user, room, user.user_id, True)  # default 30 s
    now[0] += 29.9
    assert store.typing_users(room) == [user.user_id]
    now[0] += 0.2
    assert store.typing_users(room) == []
    store.set_typing(user, room, user.user_id, True, 1_000_000)  # capped at 120 s
    now[0] += 120.1
    assert store.typing_users(room) == []


# -- joined members


async def test_joined_members(room: Room) -> None:
    r = room
    await r.req("PUT", "/profile/@a:matrix.test/displayname", r.alice, {"displayname": "Alice A."})
    await r.req("POST", f"/rooms/{r.room_id}/invite", r.alice, {"user_id": "@c:matrix.test"})
    await r.req(
        "PUT",
        f"/rooms/{r.room_id}/state/m.room.member/@b:matrix.test",
        r.bob,
        {"membership": "join", "displayname": "Bob in this room only"},
    )
    answer = await r.req("GET", f"/rooms/{r.room_id}/joined_members", r.alice)
    assert answer.status == 200
    assert answer.body == {
        "joined": {
            "@a:matrix.test": {"avatar_url": None, "display_name": "Alice A."},
            "@b:matrix.test": {"avatar_url": None, "display_name": "Bob in this room only"},
        }
    }  # the invited carol is not listed [9.1, 9.3]
    answer = await call(
        r.http, "GET", f"{r.mock.url}/_matrix/client/r0/rooms/{r.room_id}/joined_members", token=r.bob
    )
    assert answer.status == 200
    assert set(answer.body["joined"]) == {"@a:matrix.test", "@b:matrix.test"}


async def test_joined_members_refusals(room: Room) -> None:
    r = room
    for room_id in (r.room_id, V12_UNKNOWN, "garbage"):  # invited only, unknown, not an id [9.8, 9.10, 9.11]
        answered(
            await r.req("GET", f"/rooms/{room_id}/joined_members", r.carol),
            403,
            "M_FORBIDDEN",
            f"User @c:matrix.test not in room {room_id}, and room previews are disabled",
        )
    answered(await r.req("GET", f"/rooms/{r.room_id}/joined_members", None), 401, "M_MISSING_TOKEN")
    answered(
        await r.req("GET", f"/rooms/{V12_UNKNOWN}/joined_members", "syt_bad"), 401, "M_UNKNOWN_TOKEN"
    )  # 9.13
    readable = (
        await r.req(
            "POST",
            "/createRoom",
            r.alice,
            {
                "initial_state": [
                    {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
                ]
            },
        )
    ).body["room_id"]
    answer = await r.req("GET", f"/rooms/{readable}/joined_members", r.carol)
    assert answer.status == 200
    assert set(answer.body["joined"]) == {"@a:matrix.test"}


# -- the contract: the empty answers are exactly {}


def test_empty_answers_refuse_any_key() -> None:
    validator = validator_for("matrix")
    json_headers = {"content-type": "application/json"}
    for operation_id in ("leaveRoom", "logout", "logout_all", "setTyping", "postReceipt", "setReadMarker"):
        operation = validator.operations[operation_id]
        good, _ = validator.check_response(operation, status=200, headers=json_headers, body=b"{}")
        bad, _ = validator.check_response(operation, status=200, headers=json_headers, body=b'{"a": 1}')
        assert good == [], operation_id
        assert bad, operation_id
    members = validator.operations["getJoinedMembersByRoom"]
    wrong = b'{"joined": {"@a:x": {"display_name": "A"}}}'  # avatar_url missing
    assert validator.check_response(members, status=200, headers=json_headers, body=wrong)[0]
