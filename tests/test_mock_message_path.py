"""The message path without /sync: leave, logout, logout/all, typing, receipts, read markers and joined
members, over HTTP against the mock, with the statuses, errcodes, texts and error precedence Synapse 1.163
answers (the issue 13 probes of real Synapse 1.163.2; probe numbers in the comments), and what each one
leaves in the store for a later /sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from contracts.validation import validator_for
from mockgen.pytest_plugin import MatrixMock
from mockgen.store.matrix import MatrixStore
from mockgen.store.matrix.ephemeral import RECEIPT_TYPES
from mockgen.store.matrix.model import ReceiptKey
from tests.support import Answer, call, login, register

pytestmark = pytest.mark.mock_lenient  # many requests here are bad on purpose

V12_UNKNOWN = "!" + "a" * 43  # a well-formed room version 12 id no room has
NO_EVENT = "$doesnotexist000000000000000000000000000000000"


@dataclass
class Room:
    http: aiohttp.ClientSession
    mock: MatrixMock
    base: str
    alice: str  # the creator's token
    bob: str  # a member's token
    carol: str  # an outsider's token
    room_id: str
    e1: str  # alice's message
    e2: str  # bob's message

    async def req(
        self, method: str, path: str, token: str | None, body: Any = None, data: bytes | None = None
    ) -> Answer:
        return await call(self.http, method, f"{self.base}{path}", token=token, json_body=body, data=data)

    async def send(self, token: str, txn: str, content: dict[str, Any] | None = None) -> Answer:
        return await self.req(
            "PUT",
            f"/rooms/{self.room_id}/send/m.room.message/{txn}",
            token,
            content or {"msgtype": "m.text", "body": txn},
        )

    @property
    def store(self) -> MatrixStore:
        return self.mock.world.matrix


@pytest.fixture
async def room(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Room:
    base = f"{matrix_mock.url}/_matrix/client/v3"
    tokens = [(await register(http, matrix_mock.url, name)).body["access_token"] for name in "abc"]
    alice, bob, carol = tokens
    created = await call(http, "POST", f"{base}/createRoom", token=alice, json_body={"preset": "public_chat"})
    room_id = created.body["room_id"]
    assert (await call(http, "POST", f"{base}/join/{room_id}", token=bob, json_body={})).status == 200
    r = Room(http, matrix_mock, base, alice, bob, carol, room_id, "", "")
    r.e1 = (await r.send(alice, "e1")).body["event_id"]
    r.e2 = (await r.send(bob, "e2")).body["event_id"]
    return r


def _is(answer: Answer, status: int, errcode: str | None = None, error: str | None = None) -> None:
    assert answer.status == status, answer.body
    if errcode is None:
        assert answer.body == {}, "nio wants exactly {}"
    else:
        assert answer.errcode == errcode, answer.body
    if error is not None:
        assert answer.body["error"] == error


# -- leave


async def test_leave_changes_membership_and_what_later_calls_see(room: Room) -> None:
    r, bob_id = room, "@b:matrix.test"
    leave = f"/rooms/{r.room_id}/leave"
    _is(await r.req("POST", leave, r.bob, {}), 200)
    _is(await r.req("POST", leave, r.bob, {}), 200)  # the same leave again [4.2]
    assert r.store.rooms[r.room_id].membership(bob_id) == "leave"
    not_in = f"User {bob_id} not in room {r.room_id}"
    _is(await r.send(r.bob, "after"), 403, "M_FORBIDDEN", not_in)  # 4.19
    typing = {"typing": True, "timeout": 1000}
    _is(await r.req("PUT", f"/rooms/{r.room_id}/typing/{bob_id}", r.bob, typing), 403, "M_FORBIDDEN", not_in)
    _is(
        await r.req("GET", f"/rooms/{r.room_id}/joined_members", r.bob),
        403,
        "M_FORBIDDEN",
        "Getting joined members while not being a current member of the room is forbidden.",
    )  # 4.21
    assert (await r.req("GET", "/joined_rooms", r.bob)).body == {"joined_rooms": []}  # 4.27
    members = (await r.req("GET", f"/rooms/{r.room_id}/joined_members", r.alice)).body["joined"]
    assert set(members) == {"@a:matrix.test"}
    # A leave with another content by someone no longer in the room [4.13]
    _is(
        await r.req("POST", leave, r.bob, {"reason": "x"}),
        403,
        "M_FORBIDDEN",
        f"{bob_id} not in room {r.room_id}.",
    )
    # A receipt on an event from before the leave is still fine [4.23]
    _is(await r.req("POST", f"/rooms/{r.room_id}/receipt/m.read/{r.e2}", r.bob, {}), 200)
    # Joining again works (the room still has a member), then a leave with any reason, or no body at all
    assert (await r.req("POST", f"/join/{r.room_id}", r.bob, {})).status == 200
    _is(await r.req("POST", leave, r.bob, {"reason": 5}), 200)  # 4.12
    assert r.store.rooms[r.room_id].content("m.room.member", bob_id) == {"membership": "leave", "reason": 5}
    assert (await r.req("POST", f"/join/{r.room_id}", r.bob, {})).status == 200
    _is(await r.req("POST", leave, r.bob, data=b""), 200)  # 4.9


async def test_leave_errors_in_synapse_order(room: Room) -> None:
    r = room
    leave = f"/rooms/{r.room_id}/leave"
    carol = "@c:matrix.test"
    _is(await r.req("POST", leave, r.carol, {}), 403, "M_FORBIDDEN", f"{carol} not in room {r.room_id}.")
    for unknown in ("!doesnotexist00000000000000000000000000000000", "!nope:matrix.test", "garbage"):
        _is(await r.req("POST", f"/rooms/{unknown}/leave", r.bob, {}), 404, "M_UNKNOWN", "Not a known room")
    _is(await r.req("POST", leave, r.bob, data=b"{"), 400, "M_NOT_JSON")
    _is(await r.req("POST", leave, r.bob, data=b"[]"), 400, "M_BAD_JSON")
    _is(await r.req("POST", leave, None, {}), 401, "M_MISSING_TOKEN")
    _is(await r.req("POST", leave, "syt_never_issued", {}), 401, "M_UNKNOWN_TOKEN")
    # body JSON before the room and the membership [4.30, 4.31]; the token before the body [4.32]
    _is(await r.req("POST", f"/rooms/{V12_UNKNOWN}/leave", r.bob, data=b"{"), 400, "M_NOT_JSON")
    _is(await r.req("POST", leave, r.carol, data=b"{"), 400, "M_NOT_JSON")
    _is(await r.req("POST", leave, None, data=b"{"), 401, "M_MISSING_TOKEN")
    _is(await r.req("POST", leave, r.bob, {"reason": "x" * 70_000}), 413, "M_TOO_LARGE")


async def test_refusing_an_invite_and_the_last_member_leaving(room: Room) -> None:
    r = room
    private = (await r.req("POST", "/createRoom", r.alice, {"invite": ["@c:matrix.test"]})).body["room_id"]
    _is(await r.req("POST", f"/rooms/{private}/leave", r.carol, {}), 200)  # 4.15
    assert r.store.rooms[private].membership("@c:matrix.test") == "leave"
    solo = (await r.req("POST", "/createRoom", r.carol, {"preset": "public_chat"})).body["room_id"]
    _is(await r.req("POST", f"/rooms/{solo}/leave", r.carol, {}), 200)  # 4.16
    again = await r.req("POST", f"/join/{solo}", r.carol, {})
    _is(
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
    _is(await r.req("POST", "/logout", r.bob, {}), 200)
    dead = await r.req("GET", "/account/whoami", r.bob)
    _is(dead, 401, "M_UNKNOWN_TOKEN", "Invalid access token passed.")
    assert dead.body["soft_logout"] is False
    _is(await r.req("POST", "/logout", r.bob, {}), 401, "M_UNKNOWN_TOKEN")  # 5.4
    assert (await r.req("GET", "/account/whoami", second)).status == 200  # 5.5
    assert len(r.store.users["@b:matrix.test"].devices) == 1  # 5.6
    _is(await r.req("POST", "/logout", None, {}), 401, "M_MISSING_TOKEN")
    # The body is never read [5.8]; nio passes the token as ?access_token= [5.13]
    answer = await call(r.http, "POST", f"{r.base}/logout", data=b"{", params={"access_token": second})
    _is(answer, 200)
    assert r.store.users["@b:matrix.test"].devices == {}


async def test_logout_all_kills_every_device_then_a_login_works(room: Room) -> None:
    r = room
    tokens = [r.alice, await login(r.http, r.mock.url, "a"), await login(r.http, r.mock.url, "a")]
    _is(await r.req("POST", "/logout/all", tokens[1], {}), 200)
    for token in tokens:
        _is(await r.req("GET", "/account/whoami", token), 401, "M_UNKNOWN_TOKEN")
    _is(await r.req("POST", "/logout/all", tokens[0], {}), 401, "M_UNKNOWN_TOKEN")  # 5.22
    _is(await r.req("POST", "/logout/all", None, {}), 401, "M_MISSING_TOKEN")
    fresh = await login(r.http, r.mock.url, "a")
    assert len(r.store.users["@a:matrix.test"].devices) == 1
    answer = await call(r.http, "POST", f"{r.mock.url}/_matrix/client/r0/logout/all", token=fresh)
    _is(answer, 200)


# -- typing


async def test_typing_is_stored_and_stopped(room: Room) -> None:
    r, bob = room, "@b:matrix.test"
    path = f"/rooms/{r.room_id}/typing/{bob}"
    _is(await r.req("PUT", path, r.bob, {"typing": True, "timeout": 30000}), 200)
    assert r.store.typing_users(r.room_id) == [bob]
    stream = r.store.ephemeral_stream
    _is(await r.req("PUT", path, r.bob, {"typing": True, "timeout": 30000}), 200)
    assert r.store.ephemeral_stream == stream  # a refresh is no news
    _is(await r.req("PUT", path, r.bob, {"typing": False}), 200)
    assert r.store.typing_users(r.room_id) == []
    _is(await r.req("PUT", path, r.bob, {"typing": "yes"}), 200)  # truthiness [6.20]
    assert r.store.typing_users(r.room_id) == [bob]
    _is(await r.req("PUT", path, r.bob, {"typing": 0}), 200)  # 6.21
    assert r.store.typing_users(r.room_id) == []
    answer = await call(
        r.http, "PUT", f"{r.mock.url}/_matrix/client/r0{path}", token=r.bob, json_body={"typing": False}
    )
    _is(answer, 200)


async def test_typing_errors_in_synapse_order(room: Room) -> None:
    r, bob, carol = room, "@b:matrix.test", "@c:matrix.test"
    other = "Cannot set another user's typing state"
    on = {"typing": True, "timeout": 1000}
    _is(await r.req("PUT", f"/rooms/{r.room_id}/typing/{bob}", r.alice, on), 400, "M_FORBIDDEN", other)
    _is(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/{bob}", r.carol, on), 400, "M_FORBIDDEN", other
    )  # 6.32
    _is(await r.req("PUT", f"/rooms/{V12_UNKNOWN}/typing/{bob}", r.alice, on), 400, "M_FORBIDDEN", other)
    not_in = f"User {carol} not in room {r.room_id}"
    _is(await r.req("PUT", f"/rooms/{r.room_id}/typing/{carol}", r.carol, on), 403, "M_FORBIDDEN", not_in)
    _is(
        await r.req("PUT", f"/rooms/{V12_UNKNOWN}/typing/{bob}", r.bob, on),
        403,
        "M_FORBIDDEN",
        f"User {bob} not in room {V12_UNKNOWN}",
    )  # 6.18
    path = f"/rooms/{r.room_id}/typing/{bob}"
    _is(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/bob", r.bob, on),
        400,
        "M_INVALID_PARAM",
        "Expected UserID string to start with '@'",
    )  # 6.26
    _is(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/bob", r.bob, data=b"{"), 400, "M_INVALID_PARAM"
    )  # the path before the body
    _is(
        await r.req("PUT", f"/rooms/{r.room_id}/typing/@x:other.test", r.bob, on),
        400,
        "M_UNKNOWN",
        "User is not hosted on this homeserver",
    )  # 6.27
    _is(await r.req("PUT", path, r.bob, data=b""), 400, "M_NOT_JSON")  # 6.24
    _is(await r.req("PUT", path, r.bob, data=b"{"), 400, "M_NOT_JSON")
    _is(await r.req("PUT", path, r.bob, data=b"[]"), 400, "M_BAD_JSON")
    _is(await r.req("PUT", path, r.alice, data=b"{"), 400, "M_NOT_JSON")  # 6.33
    # Synapse answers these two with 500 (x-server-answers-500); the contract and the mock say 400
    _is(await r.req("PUT", path, r.bob, {"timeout": 1000}), 400, "M_MISSING_PARAM")
    _is(await r.req("PUT", path, r.bob, {"typing": True, "timeout": "x"}), 400, "M_BAD_JSON")
    _is(await r.req("PUT", path, None, on), 401, "M_MISSING_TOKEN")
    _is(await r.req("PUT", f"/rooms/{r.room_id}/typing/bob", "syt_bad", on), 401, "M_UNKNOWN_TOKEN")  # 6.36
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


# -- receipts


def _receipt(r: Room, event_id: str, kind: str = "m.read", room_id: str | None = None) -> str:
    return f"/rooms/{room_id or r.room_id}/receipt/{kind}/{event_id}"


async def test_receipts_are_stored_per_user_type_and_thread(room: Room) -> None:
    r, bob = room, "@b:matrix.test"
    _is(await r.req("POST", _receipt(r, r.e2), r.bob, {}), 200)
    receipts = r.store.receipts(r.room_id)
    assert receipts[ReceiptKey("m.read", bob, None)].event_id == r.e2
    _is(await r.req("POST", _receipt(r, r.e1), r.bob, {}), 200)  # an older event changes nothing [7.9]
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, None)].event_id == r.e2
    # matrix-nio: ?access_token= and {"thread_id": "main"}
    answer = await call(
        r.http,
        "POST",
        f"{r.base}{_receipt(r, r.e2)}",
        params={"access_token": r.bob},
        json_body={"thread_id": "main"},
    )
    _is(answer, 200)
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, "main")].event_id == r.e2
    _is(await r.req("POST", _receipt(r, r.e2, "m.read.private"), r.bob, {"foo": 1}), 200)  # 7.17
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read.private", bob, None)].event_id == r.e2
    # m.fully_read through the receipt endpoint is the read marker [7.6]
    _is(await r.req("POST", _receipt(r, r.e1, "m.fully_read"), r.bob, {}), 200)
    assert r.store.room_account_data(bob, r.room_id) == {"m.fully_read": {"event_id": r.e1}}
    assert ReceiptKey("m.fully_read", bob, None) not in r.store.receipts(r.room_id)
    # A thread: a reply's receipt names its root; the root takes its own thread and main [7.38-7.40]
    root = r.e1
    reply = (
        await r.send(
            r.alice,
            "t",
            {"msgtype": "m.text", "body": "r", "m.relates_to": {"rel_type": "m.thread", "event_id": root}},
        )
    ).body["event_id"]
    _is(await r.req("POST", _receipt(r, reply), r.bob, {"thread_id": root}), 200)
    _is(await r.req("POST", _receipt(r, root), r.bob, {"thread_id": root}), 200)
    _is(
        await r.req("POST", _receipt(r, reply), r.bob, {"thread_id": "main"}),
        400,
        "M_INVALID_PARAM",
        f"event_id {reply} is not related to thread main",
    )
    _is(
        await r.req("POST", _receipt(r, r.e2), r.bob, {"thread_id": r.e1}),
        400,
        "M_INVALID_PARAM",
        f"event_id {r.e2} is not related to thread {r.e1}",
    )  # 7.32
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, root)].event_id == reply


async def test_receipts_that_store_nothing(room: Room) -> None:
    r = room
    before = r.store.ephemeral_stream
    _is(await r.req("POST", _receipt(r, NO_EVENT), r.bob, {}), 200)  # 7.20
    _is(await r.req("POST", _receipt(r, r.e1, room_id=V12_UNKNOWN), r.bob, {}), 200)  # 7.27
    _is(await r.req("POST", _receipt(r, r.e1, room_id="!nope:matrix.test"), r.bob, {}), 200)  # 7.28
    other = (await r.req("POST", "/createRoom", r.alice, {})).body["room_id"]
    _is(
        await r.req("POST", _receipt(r, r.e1, room_id=other), r.alice, {}), 200
    )  # another room's event [7.22]
    assert r.store.ephemeral_stream == before
    assert r.store.receipts(r.room_id) == {}


async def test_receipt_errors_in_synapse_order(room: Room) -> None:
    r = room
    bad_ids = "A valid room ID and event ID must be specified"
    _is(await r.req("POST", _receipt(r, "notanevent"), r.bob, {}), 400, "M_UNKNOWN", bad_ids)  # 7.21
    long_id = "!doesnotexist00000000000000000000000000000000"  # not 43 characters
    _is(await r.req("POST", _receipt(r, r.e1, room_id=long_id), r.bob, {}), 400, "M_UNKNOWN", bad_ids)
    _is(await r.req("POST", _receipt(r, r.e1, room_id="garbage"), r.bob, {}), 400, "M_UNKNOWN", bad_ids)
    _is(
        await r.req("POST", _receipt(r, "bad", "m.foo"), r.bob, {}), 400, "M_UNKNOWN", bad_ids
    )  # ids first [7.43]
    for token, data in ((r.bob, None), (r.carol, None), (r.bob, b"{")):  # 7.19, 7.44, 7.45
        answer = await r.req(
            "POST", _receipt(r, r.e1, "m.foo"), token, {} if data is None else None, data=data
        )
        _is(answer, 400, "M_UNKNOWN")
        # The three names come in an order that changes per Synapse process: compared by rule
        prefix = "Receipt type must be "
        assert answer.body["error"].startswith(prefix)
        assert sorted(answer.body["error"][len(prefix) :].split(", ")) == sorted(RECEIPT_TYPES)
    _is(await r.req("POST", _receipt(r, r.e1), r.bob, data=b""), 400, "M_NOT_JSON")  # 7.16
    _is(await r.req("POST", _receipt(r, r.e1), r.bob, data=b"{"), 400, "M_NOT_JSON")
    _is(await r.req("POST", _receipt(r, r.e1), r.bob, data=b"[]"), 400, "M_BAD_JSON")
    _is(await r.req("POST", _receipt(r, r.e1), r.carol, data=b"{"), 400, "M_NOT_JSON")  # 7.46
    _is(await r.req("POST", _receipt(r, r.e1), r.bob, {"thread_id": ""}), 400, "M_INVALID_PARAM")  # 7.30
    _is(await r.req("POST", _receipt(r, r.e1), r.bob, {"thread_id": 5}), 400, "M_INVALID_PARAM")
    _is(
        await r.req("POST", _receipt(r, r.e2, "m.fully_read"), r.bob, {"thread_id": "main"}),
        400,
        "M_INVALID_PARAM",
        "thread_id is not compatible with m.fully_read receipts.",
    )  # 7.33
    hidden = "You don't have permission to access that event."
    _is(await r.req("POST", _receipt(r, r.e1), r.carol, {}), 403, "M_FORBIDDEN", hidden)  # 7.23
    _is(await r.req("POST", _receipt(r, r.e1, "m.read.private"), r.carol, {}), 403, "M_FORBIDDEN", hidden)
    _is(await r.req("POST", _receipt(r, r.e1, "m.fully_read"), r.carol, {}), 200)  # 7.25
    _is(
        await r.req("POST", _receipt(r, NO_EVENT, "m.fully_read"), r.bob, {}),
        404,
        "M_UNKNOWN",
        f"Could not find event {NO_EVENT} in room {r.room_id}",
    )
    _is(await r.req("POST", _receipt(r, r.e1), None, {}), 401, "M_MISSING_TOKEN")
    _is(await r.req("POST", _receipt(r, r.e1, "m.foo"), "syt_bad", {}), 401, "M_UNKNOWN_TOKEN")  # 7.42


async def test_receipt_after_a_leave_only_for_earlier_events(room: Room) -> None:
    r = room
    _is(await r.req("POST", f"/rooms/{r.room_id}/leave", r.bob, {}), 200)
    later = (await r.send(r.alice, "later")).body["event_id"]
    _is(await r.req("POST", _receipt(r, r.e1), r.bob, {}), 200)  # 4.23
    _is(await r.req("POST", _receipt(r, later), r.bob, {}), 403, "M_FORBIDDEN")


# -- read markers


async def test_read_markers_store_the_marker_and_the_receipts(room: Room) -> None:
    r, bob = room, "@b:matrix.test"
    path = f"/rooms/{r.room_id}/read_markers"
    _is(await r.req("POST", path, r.bob, {"m.fully_read": r.e2, "m.read": r.e2}), 200)  # 8.1
    assert r.store.room_account_data(bob, r.room_id) == {"m.fully_read": {"event_id": r.e2}}
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, None)].event_id == r.e2
    assert r.store.room_account_data("@a:matrix.test", r.room_id) == {}  # only the owner's
    _is(await r.req("POST", path, r.bob, {"m.fully_read": r.e1}), 200)  # backwards: ignored [8.5]
    assert r.store.room_account_data(bob, r.room_id) == {"m.fully_read": {"event_id": r.e2}}
    _is(await r.req("POST", path, r.bob, {"m.read.private": r.e2}), 200)  # 8.8
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read.private", bob, None)].event_id == r.e2
    for body in (
        {},
        {"m.something": r.e1},
        {"m.read": None},
        {"m.hidden": True},
        {"m.read": NO_EVENT},
        {"m.read": "abc"},
    ):
        _is(await r.req("POST", path, r.bob, body), 200)  # 8.10-8.18
    _is(await r.req("POST", path, r.carol, {"m.fully_read": r.e1}), 200)  # no membership check [8.22]
    assert r.store.room_account_data("@c:matrix.test", r.room_id) == {"m.fully_read": {"event_id": r.e1}}
    _is(await r.req("POST", f"/rooms/{V12_UNKNOWN}/read_markers", r.bob, {"m.read": r.e1}), 200)  # 8.24
    _is(await r.req("POST", "/rooms/garbage/read_markers", r.bob, {"m.read": r.e1}), 200)  # 8.26
    answer = await call(
        r.http, "POST", f"{r.mock.url}/_matrix/client/r0{path}", token=r.bob, json_body={"m.fully_read": r.e2}
    )
    _is(answer, 200)


async def test_read_marker_errors(room: Room) -> None:
    r = room
    path = f"/rooms/{r.room_id}/read_markers"
    for marker in (NO_EVENT, "abc", 5):  # 8.15, 8.17, 8.19
        _is(
            await r.req("POST", path, r.bob, {"m.fully_read": marker}),
            404,
            "M_UNKNOWN",
            f"Could not find event {marker} in room {r.room_id}",
        )
    other = (await r.req("POST", "/createRoom", r.alice, {})).body["room_id"]
    foreign = (
        await r.req(
            "PUT", f"/rooms/{other}/send/m.room.message/x", r.alice, {"msgtype": "m.text", "body": "x"}
        )
    ).body["event_id"]
    _is(await r.req("POST", path, r.bob, {"m.fully_read": foreign}), 404, "M_UNKNOWN")  # 8.21
    _is(
        await r.req("POST", f"/rooms/{V12_UNKNOWN}/read_markers", r.bob, {"m.fully_read": r.e1}),
        404,
        "M_UNKNOWN",
    )  # 8.25
    _is(
        await r.req("POST", path, r.carol, {"m.read": r.e1}),
        403,
        "M_FORBIDDEN",
        "You don't have permission to access that event.",
    )  # 8.23
    before = r.store.ephemeral_stream
    _is(
        await r.req("POST", path, r.bob, {"m.read": r.e2, "m.fully_read": NO_EVENT}), 404, "M_UNKNOWN"
    )  # 8.33
    assert r.store.ephemeral_stream == before  # the mock stores nothing on an error
    _is(await r.req("POST", path, r.bob, data=b"{"), 400, "M_NOT_JSON")
    _is(await r.req("POST", path, r.bob, data=b""), 400, "M_NOT_JSON")
    _is(await r.req("POST", path, r.bob, data=b"[]"), 400, "M_BAD_JSON")
    _is(await r.req("POST", path, r.carol, data=b"{"), 400, "M_NOT_JSON")  # 8.32
    # Synapse answers m.read as a list with 500 (x-server-answers-500); the contract and the mock say 400
    _is(await r.req("POST", path, r.bob, {"m.read": [r.e1]}), 400, "M_BAD_JSON")
    _is(await r.req("POST", path, None, {"m.read": r.e1}), 401, "M_MISSING_TOKEN")
    _is(await r.req("POST", path, "syt_bad", {"m.fully_read": NO_EVENT}), 401, "M_UNKNOWN_TOKEN")  # 8.31


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
        _is(
            await r.req("GET", f"/rooms/{room_id}/joined_members", r.carol),
            403,
            "M_FORBIDDEN",
            f"User @c:matrix.test not in room {room_id}, and room previews are disabled",
        )
    _is(await r.req("GET", f"/rooms/{r.room_id}/joined_members", None), 401, "M_MISSING_TOKEN")
    _is(await r.req("GET", f"/rooms/{V12_UNKNOWN}/joined_members", "syt_bad"), 401, "M_UNKNOWN_TOKEN")  # 9.13
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
