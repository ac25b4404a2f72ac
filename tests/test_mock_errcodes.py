"""Every (operation, status, errcode) the Matrix spec documents, and every (operation, status) of the Letta
spec, is answered by the mock in a test: from state where the mock can get there by itself, by fault
injection where only an outage or a server policy produces it. The split is explicit, so a new errcode in
the spec cannot slip through untested."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from contracts.validation import validator_for
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.support import Answer, call, login, register

pytestmark = pytest.mark.mock_lenient  # most scenarios are bad requests on purpose

GHOST_AGENT = "agent-00000000-0000-4000-8000-000000000000"
HELLO = {"messages": [{"role": "user", "content": "hello"}]}


@dataclass
class Ctx:
    http: aiohttp.ClientSession
    base: str  # .../_matrix/client/v3
    root: str
    admin: str  # admin's token
    user: str  # a plain user's token (@user)
    room: str  # an admin-created private room the plain user is not in
    mock: MatrixMock

    async def req(self, method: str, path: str, **kwargs: Any) -> Answer:
        return await call(self.http, method, f"{self.base}{path}", **kwargs)


async def make_ctx(http: aiohttp.ClientSession, mock: MatrixMock) -> Ctx:
    admin = await login(http, mock.url, "admin", "admin_password")
    user = (await register(http, mock.url, "user")).body["access_token"]
    base = f"{mock.url}/_matrix/client/v3"
    room = (await call(http, "POST", f"{base}/createRoom", token=admin, json_body={})).body["room_id"]
    return Ctx(http, base, mock.url, admin, user, room, mock)


Scenario = Callable[[Ctx], Awaitable[Answer]]
BIG = "x" * 70_000


def _login(**body: Any) -> Scenario:
    return lambda c: c.req("POST", "/login", json_body=body)


def _register(
    body: Any = None, *, data: bytes | None = None, params: dict[str, str] | None = None
) -> Scenario:
    return lambda c: c.req("POST", "/register", json_body=body, data=data, params=params)


async def _deactivated_login(c: Ctx) -> Answer:
    path = f"{c.root}/_synapse/admin/v2/users/@user:matrix.test"
    await call(c.http, "PUT", path, token=c.admin, json_body={"deactivated": True})
    await call(c.http, "PUT", path, token=c.admin, json_body={"password": "new"})
    return await c.req(
        "POST", "/login", json_body={"type": "m.login.password", "user": "user", "password": "new"}
    )


async def _registration_disabled(c: Ctx, call_it: Scenario) -> Answer:
    c.mock.world.matrix.registration_enabled = False
    return await call_it(c)


async def _unknown_session(c: Ctx) -> Answer:
    return await c.req(
        "POST",
        "/register",
        json_body={"username": "s", "password": "p", "auth": {"type": "m.login.dummy", "session": "nope"}},
    )


def _admin(
    method: str, user_id: str, body: Any = None, token: str = "admin", data: bytes | None = None
) -> Scenario:
    async def run(c: Ctx) -> Answer:
        auth = {"admin": c.admin, "user": c.user, "none": None}[token]
        return await call(
            c.http,
            method,
            f"{c.root}/_synapse/admin/v2/users/{user_id}",
            token=auth,
            json_body=body,
            data=data,
        )

    return run


async def _member_of_room(c: Ctx) -> str:
    """A room the plain user created (so the user has every power in it)."""
    answer = await c.req("POST", "/createRoom", token=c.user, json_body={})
    room_id: str = answer.body["room_id"]
    return room_id


def _state_put(
    event_type: str,
    body: Any = None,
    *,
    key: str | None = None,
    data: bytes | None = None,
    token: str = "member",
) -> Scenario:
    async def run(c: Ctx) -> Answer:
        suffix = f"/{key}" if key is not None else ""
        if token == "outsider":  # the plain user, in a room it is not in
            room, auth = c.room, c.user
        else:
            room, auth = await _member_of_room(c), c.user
        return await c.req(
            "PUT", f"/rooms/{room}/state/{event_type}{suffix}", token=auth, json_body=body, data=data
        )

    return run


def _send(body: Any = None, *, data: bytes | None = None, event_type: str = "m.room.message") -> Scenario:
    async def run(c: Ctx) -> Answer:
        room = await _member_of_room(c)
        return await c.req(
            "PUT", f"/rooms/{room}/send/{event_type}/t1", token=c.user, json_body=body, data=data
        )

    return run


async def _admin_not_member_state(c: Ctx) -> Answer:
    return await c.req("GET", f"/rooms/{c.room}/state", token=c.user)


def _state_get(event_type: str, key: str | None = None, *, token: str = "admin") -> Scenario:
    async def run(c: Ctx) -> Answer:
        suffix = f"/{key}" if key is not None else ""
        auth = {"admin": c.admin, "user": c.user, "none": None}[token]
        return await c.req("GET", f"/rooms/{c.room}/state/{event_type}{suffix}", token=auth)

    return run


def _join(path: str, body: Any = None, data: bytes | None = None, room: str | None = None) -> Scenario:
    async def run(c: Ctx) -> Answer:
        target = room if room is not None else c.room
        return await c.req("POST", path.format(room=target), token=c.user, json_body=body, data=data)

    return run


def _banned(then: Scenario) -> Scenario:
    """`then` after the admin banned @user from the room (a ban by member state, as Synapse allows)."""

    async def run(c: Ctx) -> Answer:
        key = "@user:matrix.test"
        await c.req(
            "PUT",
            f"/rooms/{c.room}/state/m.room.member/{key}",
            token=c.admin,
            json_body={"membership": "ban"},
        )
        return await then(c)

    return run


def _invite(
    body: Any = None, *, data: bytes | None = None, token: str = "admin", room: str | None = None
) -> Scenario:
    async def run(c: Ctx) -> Answer:
        auth = {"admin": c.admin, "user": c.user, "none": None}[token]
        return await c.req("POST", f"/rooms/{room or c.room}/invite", token=auth, json_body=body, data=data)

    return run


async def _create_public_alias_twice(c: Ctx) -> Answer:
    await c.req("POST", "/createRoom", token=c.admin, json_body={"room_alias_name": "pub"})
    return await c.req("POST", "/createRoom", token=c.admin, json_body={"room_alias_name": "pub"})


async def _invite_twice_known(c: Ctx) -> Answer:
    return await c.req(
        "POST", f"/rooms/{c.room}/invite", token=c.admin, json_body={"user_id": "@admin:matrix.test"}
    )


async def _invite_without_power(c: Ctx) -> Answer:
    # In a public room the invite level is 50; a plain member has 0.
    public = (await c.req("POST", "/createRoom", token=c.admin, json_body={"preset": "public_chat"})).body[
        "room_id"
    ]
    await c.req("POST", f"/join/{public}", token=c.user, json_body={})
    return await c.req(
        "POST", f"/rooms/{public}/invite", token=c.user, json_body={"user_id": "@letta:matrix.test"}
    )


async def _join_alias_missing(c: Ctx) -> Answer:
    return await c.req("POST", "/join/%23nope:matrix.test", token=c.user, json_body={})


async def _join_with_huge_reason(c: Ctx) -> Answer:
    public = (await c.req("POST", "/createRoom", token=c.admin, json_body={"preset": "public_chat"})).body[
        "room_id"
    ]
    return await c.req("POST", f"/rooms/{public}/join", token=c.user, json_body={"reason": BIG})


async def _join_alias_huge_reason(c: Ctx) -> Answer:
    public = (await c.req("POST", "/createRoom", token=c.admin, json_body={"preset": "public_chat"})).body[
        "room_id"
    ]
    return await c.req("POST", f"/join/{public}", token=c.user, json_body={"reason": BIG})


async def _send_as_outsider(c: Ctx) -> Answer:
    return await c.req(
        "PUT",
        f"/rooms/{c.room}/send/m.room.message/t",
        token=c.user,
        json_body={"msgtype": "m.text", "body": "x"},
    )


async def _create_room_version(c: Ctx) -> Answer:
    room = await _member_of_room(c)
    return await c.req(
        "PUT", f"/rooms/{room}/state/m.room.create", token=c.user, json_body={"room_version": "999"}
    )


NATURAL: dict[tuple[str, int, str | None], Scenario] = {
    ("login", 400, "M_NOT_JSON"): lambda c: c.req("POST", "/login", data=b"{oops"),
    ("login", 400, "M_BAD_JSON"): lambda c: c.req("POST", "/login", data=b"[]"),
    ("login", 400, "M_UNKNOWN"): _login(type="m.login.bogus", user="admin", password="x"),
    ("login", 400, "M_INVALID_PARAM"): _login(type="m.login.password", user="admin"),
    ("login", 403, "M_FORBIDDEN"): _login(type="m.login.password", user="admin", password="wrong"),
    ("login", 400, "M_MISSING_PARAM"): _login(
        type="m.login.password", identifier={"user": "admin"}, password="x"
    ),
    ("login", 403, "M_USER_DEACTIVATED"): _deactivated_login,
    ("register", 400, "M_USER_IN_USE"): _register({"username": "admin", "password": "p"}),
    ("register", 400, "M_INVALID_USERNAME"): _register({"username": "Bad Name!", "password": "p"}),
    ("register", 400, "M_MISSING_PARAM"): _register({"username": "nopw", "auth": {"type": "m.login.dummy"}}),
    ("register", 400, "M_INVALID_PARAM"): _register(
        {"username": "x1", "password": "p", "auth": {"type": "m.login.bogus"}}
    ),
    ("register", 400, "M_UNRECOGNIZED"): _register({}, params={"kind": "robot"}),
    ("register", 400, "M_UNKNOWN"): _unknown_session,
    ("register", 400, "M_NOT_JSON"): _register(data=b"{"),
    ("register", 400, "M_BAD_JSON"): _register(data=b"[1]"),
    ("register", 401, None): _register({"username": "fresh", "password": "p"}),
    ("register", 403, "M_UNKNOWN"): _register({}, params={"kind": "guest"}),
    ("register", 403, "M_FORBIDDEN"): lambda c: _registration_disabled(
        c, _register({"username": "z", "password": "p"})
    ),
    ("checkUsernameAvailability", 400, "M_USER_IN_USE"): lambda c: c.req(
        "GET", "/register/available", params={"username": "admin"}
    ),
    ("checkUsernameAvailability", 400, "M_INVALID_USERNAME"): lambda c: c.req(
        "GET", "/register/available", params={"username": "Admin"}
    ),
    ("checkUsernameAvailability", 400, "M_MISSING_PARAM"): lambda c: c.req("GET", "/register/available"),
    ("checkUsernameAvailability", 403, "M_FORBIDDEN"): lambda c: _registration_disabled(
        c, lambda c2: c2.req("GET", "/register/available", params={"username": "free"})
    ),
    ("getDisplayName", 400, "M_INVALID_PARAM"): lambda c: c.req("GET", "/profile/notauserid/displayname"),
    ("getDisplayName", 404, "M_NOT_FOUND"): lambda c: c.req("GET", "/profile/@ghost:matrix.test/displayname"),
    # Optional auth: no token is fine, a malformed Authorization header is not.
    ("getVersions", 401, "M_MISSING_TOKEN"): lambda c: call(
        c.http, "GET", f"{c.root}/_matrix/client/versions", headers={"Authorization": "Basic x"}
    ),
    ("getDisplayName", 401, "M_MISSING_TOKEN"): lambda c: c.req(
        "GET", "/profile/@admin:matrix.test/displayname", headers={"Authorization": "Basic x"}
    ),
    ("getDisplayName", 403, "M_FORBIDDEN"): lambda c: c.req("GET", "/profile/@a:other.server/displayname"),
    ("setDisplayName", 400, "M_FORBIDDEN"): lambda c: c.req(
        "PUT", "/profile/@admin:matrix.test/displayname", token=c.user, json_body={"displayname": "x"}
    ),
    ("setDisplayName", 400, "M_MISSING_PARAM"): lambda c: c.req(
        "PUT", "/profile/@user:matrix.test/displayname", token=c.user, json_body={}
    ),
    ("setDisplayName", 400, "M_INVALID_PARAM"): lambda c: c.req(
        "PUT", "/profile/@user:matrix.test/displayname", token=c.user, json_body={"displayname": 42}
    ),
    ("setDisplayName", 400, "M_UNKNOWN"): lambda c: c.req(
        "PUT", "/profile/@user:matrix.test/displayname", token=c.user, json_body={"displayname": "a" * 257}
    ),
    ("setDisplayName", 400, "M_NOT_JSON"): lambda c: c.req(
        "PUT", "/profile/@user:matrix.test/displayname", token=c.user, data=b"{oops"
    ),
    ("setDisplayName", 400, "M_BAD_JSON"): lambda c: c.req(
        "PUT", "/profile/@user:matrix.test/displayname", token=c.user, data=b"7"
    ),
    ("getRoomStateEvent", 400, "M_INVALID_PARAM"): lambda c: c.req(
        "GET", f"/rooms/{c.room}/state/m.room.create", token=c.admin, params={"format": "bogus"}
    ),
    ("getRoomStateWithKey", 400, "M_INVALID_PARAM"): lambda c: c.req(
        "GET",
        f"/rooms/{c.room}/state/m.room.member/@admin:matrix.test",
        token=c.admin,
        params={"format": "bogus"},
    ),
    ("createRoom", 400, "M_ROOM_IN_USE"): _create_public_alias_twice,
    ("createRoom", 400, "M_MISSING_PARAM"): lambda c: c.req(
        "POST", "/createRoom", token=c.user, json_body={"initial_state": [{"type": "x"}]}
    ),
    ("createRoom", 400, "M_UNSUPPORTED_ROOM_VERSION"): lambda c: c.req(
        "POST", "/createRoom", token=c.user, json_body={"room_version": "999"}
    ),
    ("createRoom", 400, "M_UNKNOWN"): lambda c: c.req(
        "POST", "/createRoom", token=c.user, json_body={"name": 123}
    ),
    ("createRoom", 400, "M_BAD_JSON"): lambda c: c.req(
        "POST", "/createRoom", token=c.user, json_body={"preset": "bogus"}
    ),
    ("createRoom", 400, "M_NOT_JSON"): lambda c: c.req("POST", "/createRoom", token=c.user, data=b""),
    ("createRoom", 400, "M_INVALID_PARAM"): lambda c: c.req(
        "POST", "/createRoom", token=c.user, json_body={"room_alias_name": "a" * 250}
    ),
    ("createRoom", 413, "M_TOO_LARGE"): lambda c: c.req(
        "POST", "/createRoom", token=c.user, json_body={"topic": BIG}
    ),
    ("joinRoomById", 400, "M_NOT_JSON"): _join("/rooms/{room}/join", data=b"{"),
    ("joinRoomById", 400, "M_BAD_JSON"): _join("/rooms/{room}/join", data=b"[]"),
    ("joinRoomById", 403, "M_FORBIDDEN"): _join("/rooms/{room}/join", {}),
    ("joinRoomById", 403, "M_BAD_STATE"): _banned(_join("/rooms/{room}/join", {})),
    ("joinRoomById", 404, "M_UNKNOWN"): _join("/rooms/{room}/join", {}, room="!doesnotexist:matrix.test"),
    ("joinRoomById", 413, "M_TOO_LARGE"): _join_with_huge_reason,
    ("joinRoom", 400, "M_UNKNOWN"): _join("/join/{room}", {}, room="garbage"),
    ("joinRoom", 400, "M_NOT_JSON"): _join("/join/{room}", data=b"{"),
    ("joinRoom", 400, "M_BAD_JSON"): _join("/join/{room}", data=b"[]"),
    ("joinRoom", 403, "M_FORBIDDEN"): _join("/join/{room}", {}),
    ("joinRoom", 403, "M_BAD_STATE"): _banned(_join("/join/{room}", {})),
    ("joinRoom", 404, "M_NOT_FOUND"): _join_alias_missing,
    ("joinRoom", 404, "M_UNKNOWN"): _join("/join/{room}", {}, room="!doesnotexist:matrix.test"),
    ("joinRoom", 413, "M_TOO_LARGE"): _join_alias_huge_reason,
    ("joinRoom", 502, "M_UNKNOWN"): _join("/join/{room}", {}, room="%23remote:other.server"),
    ("inviteUser", 400, "M_MISSING_PARAM"): _invite({}),
    ("inviteUser", 400, "M_INVALID_PARAM"): _invite({"user_id": "notauser"}),
    ("inviteUser", 400, "M_NOT_JSON"): _invite(data=b"{"),
    ("inviteUser", 400, "M_BAD_JSON"): _invite(data=b"[]"),
    ("inviteUser", 403, "M_FORBIDDEN"): _invite_without_power,
    ("inviteUser", 403, "M_BAD_STATE"): _banned(_invite({"user_id": "@user:matrix.test"})),
    ("inviteUser", 413, "M_TOO_LARGE"): _invite({"user_id": "@letta:matrix.test", "reason": BIG}),
    ("getRoomState", 403, "M_FORBIDDEN"): _admin_not_member_state,
    ("getRoomStateEvent", 403, "M_FORBIDDEN"): _state_get("m.room.create", token="user"),
    ("getRoomStateEvent", 404, "M_NOT_FOUND"): _state_get("m.room.avatar"),
    ("getRoomStateWithKey", 403, "M_FORBIDDEN"): _state_get("m.space.child", "!x", token="user"),
    ("getRoomStateWithKey", 404, "M_NOT_FOUND"): _state_get("m.space.child", "!x"),
    ("setRoomState", 400, "M_UNKNOWN"): _state_put("m.room.name", {"name": 5}),
    ("setRoomState", 400, "M_NOT_JSON"): _state_put("m.room.name", data=b"{"),
    ("setRoomState", 400, "M_BAD_JSON"): _state_put("m.room.power_levels", {"ban": "50"}),
    ("setRoomState", 400, "M_INVALID_PARAM"): _state_put("m.room.create", {"room_version": "12"}),
    ("setRoomState", 400, "M_UNSUPPORTED_ROOM_VERSION"): _create_room_version,
    ("setRoomState", 403, "M_FORBIDDEN"): _state_put("m.room.name", {"name": "x"}, token="outsider"),
    ("setRoomState", 413, "M_TOO_LARGE"): _state_put("m.room.topic", {"topic": BIG}),
    ("setRoomStateWithKey", 400, "M_UNKNOWN"): _state_put(
        "m.room.member", {"membership": 3}, key="@user:matrix.test"
    ),
    ("setRoomStateWithKey", 400, "M_NOT_JSON"): _state_put("m.space.child", data=b"{", key="!x"),
    ("setRoomStateWithKey", 400, "M_BAD_JSON"): _state_put("m.space.child", data=b"[]", key="!x"),
    ("setRoomStateWithKey", 400, "M_INVALID_PARAM"): _state_put(
        "m.room.member", {"membership": "join"}, key="notauser"
    ),
    ("setRoomStateWithKey", 403, "M_FORBIDDEN"): _state_put(
        "org.example", {"v": 1}, key="@admin:matrix.test"
    ),
    ("setRoomStateWithKey", 403, "M_BAD_STATE"): _banned(
        _state_put("m.room.member", {"membership": "join"}, key="@user:matrix.test", token="outsider")
    ),
    ("setRoomStateWithKey", 404, "M_UNKNOWN"): lambda c: c.req(
        "PUT",
        "/rooms/!gone:matrix.test/state/m.room.member/@user:matrix.test",
        token=c.user,
        json_body={"membership": "leave"},
    ),
    ("setRoomStateWithKey", 413, "M_TOO_LARGE"): _state_put("m.space.child", {"via": [BIG]}, key="!x"),
    ("sendMessage", 400, "M_UNKNOWN"): _send({}),
    ("sendMessage", 400, "M_NOT_JSON"): _send(data=b"{"),
    ("sendMessage", 400, "M_BAD_JSON"): _send(data=b"[]"),
    ("sendMessage", 403, "M_FORBIDDEN"): _send_as_outsider,
    ("sendMessage", 413, "M_TOO_LARGE"): _send({"msgtype": "m.text", "body": BIG}),
    ("adminGetUser", 400, "M_UNKNOWN"): _admin("GET", "@x:other.test"),
    ("adminGetUser", 400, "M_INVALID_PARAM"): _admin("GET", "notauser"),
    ("adminGetUser", 403, "M_FORBIDDEN"): _admin("GET", "@admin:matrix.test", token="user"),
    ("adminGetUser", 404, "M_NOT_FOUND"): _admin("GET", "@ghost:matrix.test"),
    ("adminPutUser", 201, None): _admin("PUT", "@created:matrix.test", {"password": "pw"}),
    ("adminPutUser", 400, "M_UNKNOWN"): _admin("PUT", "@x:other.test", {"password": "pw"}),
    ("adminPutUser", 400, "M_INVALID_PARAM"): _admin("PUT", "notauser", {"password": "pw"}),
    ("adminPutUser", 400, "M_MISSING_PARAM"): _admin(
        "PUT", "@t:matrix.test", {"threepids": [{"address": "a@b.c"}]}
    ),
    ("adminPutUser", 400, "M_NOT_JSON"): _admin("PUT", "@t:matrix.test", data=b"{"),
    ("adminPutUser", 400, "M_BAD_JSON"): _admin("PUT", "@t:matrix.test", {"admin": "yes"}),
    ("adminPutUser", 400, "M_INVALID_USERNAME"): _admin("PUT", "@Bad:matrix.test", {"password": "pw"}),
    ("adminPutUser", 403, "M_FORBIDDEN"): _admin("PUT", "@t:matrix.test", {"password": "pw"}, token="user"),
}


async def _joined_room(c: Ctx) -> tuple[str, str]:
    """A room the plain user created, and the id of a message in it."""
    room = await _member_of_room(c)
    body = {"msgtype": "m.text", "body": "x"}
    sent = await c.req("PUT", f"/rooms/{room}/send/m.room.message/m1", token=c.user, json_body=body)
    return room, sent.body["event_id"]


def _in_room(method: str, path: str, body: Any = None, *, data: bytes | None = None) -> Scenario:
    """A request by the plain user in a room of its own: `path` may name `{room}` and `{event}`."""

    async def run(c: Ctx) -> Answer:
        room, event = await _joined_room(c)
        filled = path.format(room=room, event=event, outside=c.room)
        return await c.req(method, filled, token=c.user, json_body=body, data=data)

    return run


# The message path (issue 13): leave, typing, receipts, read markers, joined members.
MESSAGE_PATH: dict[tuple[str, int, str | None], Scenario] = {
    ("leaveRoom", 400, "M_NOT_JSON"): _in_room("POST", "/rooms/{room}/leave", data=b"{"),
    ("leaveRoom", 400, "M_BAD_JSON"): _in_room("POST", "/rooms/{room}/leave", data=b"[]"),
    ("leaveRoom", 403, "M_FORBIDDEN"): _in_room("POST", "/rooms/{outside}/leave", {}),
    ("leaveRoom", 404, "M_UNKNOWN"): _in_room("POST", "/rooms/garbage/leave", {}),
    ("leaveRoom", 413, "M_TOO_LARGE"): _in_room("POST", "/rooms/{room}/leave", {"reason": BIG}),
    ("setTyping", 400, "M_NOT_JSON"): _in_room("PUT", "/rooms/{room}/typing/@user:matrix.test", data=b"{"),
    ("setTyping", 400, "M_BAD_JSON"): _in_room("PUT", "/rooms/{room}/typing/@user:matrix.test", data=b"[]"),
    ("setTyping", 400, "M_MISSING_PARAM"): _in_room("PUT", "/rooms/{room}/typing/@user:matrix.test", {}),
    ("setTyping", 400, "M_INVALID_PARAM"): _in_room("PUT", "/rooms/{room}/typing/user", {"typing": True}),
    ("setTyping", 400, "M_UNKNOWN"): _in_room("PUT", "/rooms/{room}/typing/@x:other.test", {"typing": True}),
    ("setTyping", 400, "M_FORBIDDEN"): _in_room(
        "PUT", "/rooms/{room}/typing/@admin:matrix.test", {"typing": True}
    ),
    ("setTyping", 403, "M_FORBIDDEN"): _in_room(
        "PUT", "/rooms/{outside}/typing/@user:matrix.test", {"typing": True}
    ),
    ("postReceipt", 400, "M_UNKNOWN"): _in_room("POST", "/rooms/{room}/receipt/m.foo/{event}", {}),
    ("postReceipt", 400, "M_NOT_JSON"): _in_room("POST", "/rooms/{room}/receipt/m.read/{event}", data=b""),
    ("postReceipt", 400, "M_BAD_JSON"): _in_room("POST", "/rooms/{room}/receipt/m.read/{event}", data=b"[]"),
    ("postReceipt", 400, "M_INVALID_PARAM"): _in_room(
        "POST", "/rooms/{room}/receipt/m.read/{event}", {"thread_id": ""}
    ),
    ("postReceipt", 404, "M_UNKNOWN"): _in_room(
        "POST", "/rooms/{room}/receipt/m.fully_read/$" + "x" * 43, {}
    ),
    ("setReadMarker", 400, "M_NOT_JSON"): _in_room("POST", "/rooms/{room}/read_markers", data=b"{"),
    ("setReadMarker", 400, "M_BAD_JSON"): _in_room("POST", "/rooms/{room}/read_markers", data=b"[]"),
    ("setReadMarker", 404, "M_UNKNOWN"): _in_room(
        "POST", "/rooms/{room}/read_markers", {"m.fully_read": "$nope"}
    ),
    ("getJoinedMembersByRoom", 403, "M_FORBIDDEN"): _in_room("GET", "/rooms/{outside}/joined_members"),
}


async def _hidden_event(c: Ctx, then: Callable[[Ctx, str], Awaitable[Answer]]) -> Answer:
    """An event of the admin's room, which the plain user is not in."""
    body = {"msgtype": "m.text", "body": "x"}
    sent = await c.req("PUT", f"/rooms/{c.room}/send/m.room.message/h1", token=c.admin, json_body=body)
    return await then(c, sent.body["event_id"])


def _as_user(method: str, path: str, body: Any = None, *, data: bytes | None = None) -> Scenario:
    """A request by the plain user (@user); `path` may name `{me}`, `{other}`."""
    filled = path.format(me="@user:matrix.test", other="@admin:matrix.test")
    return lambda c: c.req(method, filled, token=c.user, json_body=body, data=data)


# /sync and filters (issue 13).
MESSAGE_PATH.update(
    {
        ("sync", 400, "M_UNKNOWN"): _as_user("GET", "/sync?since=garbage"),
        ("sync", 400, "M_INVALID_PARAM"): _as_user("GET", "/sync?timeout=abc"),
        ("sync", 400, "M_NOT_JSON"): _as_user("GET", "/sync?filter=%7Bbad"),
        ("defineFilter", 400, "M_NOT_JSON"): _as_user("POST", "/user/{me}/filter", data=b"{"),
        ("defineFilter", 400, "M_BAD_JSON"): _as_user("POST", "/user/{me}/filter", data=b"[]"),
        ("defineFilter", 400, "M_UNKNOWN"): _as_user(
            "POST", "/user/{me}/filter", {"room": {"timeline": {"limit": "x"}}}
        ),
        ("defineFilter", 400, "M_INVALID_PARAM"): _as_user("POST", "/user/user/filter", {}),
        ("defineFilter", 403, "M_FORBIDDEN"): _as_user("POST", "/user/{other}/filter", {}),
        ("getFilter", 400, "M_UNKNOWN"): _as_user("GET", "/user/{me}/filter/abc"),
        ("getFilter", 400, "M_INVALID_PARAM"): _as_user("GET", "/user/user/filter/0"),
        ("getFilter", 403, "M_FORBIDDEN"): _as_user("GET", "/user/{other}/filter/0"),
        ("getFilter", 404, "M_NOT_FOUND"): _as_user("GET", "/user/{me}/filter/9999"),
        ("getRoomEvents", 400, "M_INVALID_PARAM"): _in_room("GET", "/rooms/{room}/messages?dir=x"),
        ("getRoomEvents", 400, "M_UNKNOWN"): _in_room("GET", "/rooms/{room}/messages?from=garbage"),
        ("getRoomEvents", 400, "M_NOT_JSON"): _in_room("GET", "/rooms/{room}/messages?filter=%7Bbad"),
        ("getRoomEvents", 403, "M_FORBIDDEN"): _in_room("GET", "/rooms/{outside}/messages"),
    }
)
MESSAGE_PATH[("postReceipt", 403, "M_FORBIDDEN")] = lambda c: _hidden_event(
    c,
    lambda c2, event: c2.req("POST", f"/rooms/{c2.room}/receipt/m.read/{event}", token=c2.user, json_body={}),
)
MESSAGE_PATH[("setReadMarker", 403, "M_FORBIDDEN")] = lambda c: _hidden_event(
    c,
    lambda c2, event: c2.req(
        "POST", f"/rooms/{c2.room}/read_markers", token=c2.user, json_body={"m.read": event}
    ),
)
NATURAL.update(MESSAGE_PATH)

# What the mock only says when told to: outages, rate limits and server policies a mock has no state for.
FAULT_ONLY_STATUSES = {500, 429}
FAULT_ONLY: set[tuple[str, int, str | None]] = {
    ("createRoom", 403, "M_FORBIDDEN"),  # a spam-checker/module policy
    ("joinRoomById", 404, "M_NOT_FOUND"),  # only reachable through an alias
    ("sendMessage", 400, "M_INVALID_PARAM"),  # the state-only codes of the shared event-content answer
    ("sendMessage", 400, "M_UNSUPPORTED_ROOM_VERSION"),
    ("setRoomStateWithKey", 400, "M_UNSUPPORTED_ROOM_VERSION"),  # m.room.create has no state key
    ("adminGetUser", 400, "M_MISSING_PARAM"),  # GET has no body: the body codes of the shared answer
    ("adminGetUser", 400, "M_NOT_JSON"),
    ("adminGetUser", 400, "M_BAD_JSON"),
    ("adminGetUser", 400, "M_INVALID_USERNAME"),
    ("adminGetUser", 400, "M_USER_IN_USE"),
    ("adminPutUser", 400, "M_USER_IN_USE"),  # case-insensitive clash; upper case is refused first here
}
# A reverse proxy's pages on the long-poll and /messages: never the homeserver's own answer.
FAULT_ONLY |= {(operation, status, None) for operation in ("sync", "getRoomEvents") for status in (502, 504)}


def _documented(service: str) -> list[tuple[str, int, str | None]]:
    found = []
    for operation in validator_for(service).iter_operations():
        for status, response in operation.responses.items():
            schema = response.media_types.get("application/json", ({}, None))[0]
            codes = schema.get("properties", {}).get("errcode", {}).get("enum") if schema else None
            for code in codes or [None]:
                found.append((operation.operation_id, int(status), code))
    return found


MATRIX_CASES = [case for case in _documented("matrix") if case[1] >= 400 or case in NATURAL]


def test_every_documented_error_is_either_natural_or_declared_fault_only() -> None:
    errors = {case for case in _documented("matrix") if case[1] >= 400}
    # From state for every operation they apply to: 401 without a token, with one never issued or with a
    # locked account's, and 404 M_UNRECOGNIZED for a version prefix other than r0 and v3.
    generic = {case for case in errors if case[1] == 401 or case[2] == "M_UNRECOGNIZED"}
    natural = {case for case in NATURAL if case[1] >= 400} | generic
    fault_only = {case for case in errors if case[1] in FAULT_ONLY_STATUSES} | FAULT_ONLY
    assert natural <= errors, f"scenarios for undocumented answers: {natural - errors}"
    assert errors - natural - fault_only == set(), "errors with neither a scenario nor a declared fault"
    assert natural & FAULT_ONLY == set()


async def _valid_request(
    c: Ctx, operation_id: str, *, authenticate: bool = True, token: str | None = None
) -> Answer:
    """A request the operation accepts (answered by an injected fault), sent as the admin, or with `token`
    instead when `authenticate` is false."""
    room = c.room
    requests: dict[str, tuple[str, str, Any, bool]] = {
        "getVersions": ("GET", f"{c.root}/_matrix/client/versions", None, False),
        "getLoginFlows": ("GET", "/login", None, False),
        "login": (
            "POST",
            "/login",
            {"type": "m.login.password", "user": "admin", "password": "admin_password"},
            False,
        ),
        "register": ("POST", "/register", {"username": "fresh", "password": "pw"}, False),
        "checkUsernameAvailability": ("GET", "/register/available?username=free", None, False),
        "getTokenOwner": ("GET", "/account/whoami", None, True),
        "getDisplayName": ("GET", "/profile/@admin:matrix.test/displayname", None, False),
        "setDisplayName": ("PUT", "/profile/@admin:matrix.test/displayname", {"displayname": "A"}, True),
        "createRoom": ("POST", "/createRoom", {}, True),
        "joinRoomById": ("POST", f"/rooms/{room}/join", {}, True),
        "joinRoom": ("POST", f"/join/{room}", {}, True),
        "inviteUser": ("POST", f"/rooms/{room}/invite", {"user_id": "@letta:matrix.test"}, True),
        "getRoomState": ("GET", f"/rooms/{room}/state", None, True),
        "getRoomStateEvent": ("GET", f"/rooms/{room}/state/m.room.create", None, True),
        "getRoomStateWithKey": ("GET", f"/rooms/{room}/state/m.room.member/@admin:matrix.test", None, True),
        "setRoomState": ("PUT", f"/rooms/{room}/state/m.room.name", {"name": "n"}, True),
        "setRoomStateWithKey": (
            "PUT",
            f"/rooms/{room}/state/m.space.child/!x",
            {"via": ["matrix.test"]},
            True,
        ),
        "getJoinedRooms": ("GET", "/joined_rooms", None, True),
        "sendMessage": (
            "PUT",
            f"/rooms/{room}/send/m.room.message/t9",
            {"msgtype": "m.text", "body": "b"},
            True,
        ),
        "leaveRoom": ("POST", f"/rooms/{room}/leave", {}, True),
        "logout": ("POST", "/logout", {}, True),
        "logout_all": ("POST", "/logout/all", {}, True),
        "setTyping": ("PUT", f"/rooms/{room}/typing/@admin:matrix.test", {"typing": True}, True),
        "postReceipt": ("POST", f"/rooms/{room}/receipt/m.read/$unknown", {}, True),
        "setReadMarker": ("POST", f"/rooms/{room}/read_markers", {}, True),
        "getJoinedMembersByRoom": ("GET", f"/rooms/{room}/joined_members", None, True),
        "sync": ("GET", "/sync", None, True),
        "getRoomEvents": ("GET", f"/rooms/{room}/messages?dir=b", None, True),
        "defineFilter": ("POST", "/user/@admin:matrix.test/filter", {"room": {}}, True),
        "getFilter": ("GET", "/user/@admin:matrix.test/filter/0", None, True),
        "adminGetUser": ("GET", f"{c.root}/_synapse/admin/v2/users/@admin:matrix.test", None, True),
        "adminPutUser": (
            "PUT",
            f"{c.root}/_synapse/admin/v2/users/@admin:matrix.test",
            {"displayname": "A"},
            True,
        ),
    }
    method, path, body, needs_token = requests[operation_id]
    url = path if path.startswith("http") else f"{c.base}{path}"
    sent = (c.admin if needs_token else None) if authenticate else token
    return await call(c.http, method, url, json_body=body, token=sent)


def _fault_body(operation_id: str, status: int, errcode: str | None) -> Any:
    operation = validator_for("matrix").operations[operation_id]
    examples = operation.responses[str(status)].examples
    body = json.loads(json.dumps(examples[0][1]))
    if errcode is not None:
        body["errcode"] = errcode
    return body


@pytest.mark.parametrize("case", MATRIX_CASES, ids=lambda case: f"{case[0]}-{case[1]}-{case[2]}")
async def test_matrix_answer(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, case: tuple[str, int, str | None]
) -> None:
    operation_id, status, errcode = case
    ctx = await make_ctx(http, matrix_mock)
    scenario = NATURAL.get(case)
    if scenario is not None:
        answer = await scenario(ctx)
    elif errcode == "M_USER_LOCKED":
        # The admin locks its own account: its token, and a login with its right password, are refused.
        admin_url = f"{ctx.root}/_synapse/admin/v2/users/@admin:matrix.test"
        locked = await call(http, "PUT", admin_url, token=ctx.admin, json_body={"locked": True})
        assert locked.status == 200, locked.body
        # An operation with optional auth checks the token only when one is sent.
        optional = validator_for("matrix").operations[operation_id].auth_optional
        answer = await _valid_request(ctx, operation_id, authenticate=not optional, token=ctx.admin)
    elif status == 401:
        token = None if errcode == "M_MISSING_TOKEN" else "syt_never_issued"
        answer = await _valid_request(ctx, operation_id, authenticate=False, token=token)
    elif errcode == "M_UNRECOGNIZED":
        ctx.base = f"{ctx.root}/_matrix/client/v2"
        answer = await _valid_request(ctx, operation_id)
    else:
        fault = matrix_mock.inject(
            operation_id, status=status, body=_fault_body(operation_id, status, errcode)
        )
        answer = await _valid_request(ctx, operation_id)
        assert fault.fired == 1
    assert (answer.status, answer.errcode) == (status, errcode), answer.body
    [entry] = [e for e in matrix_mock.journal() if e.operation == operation_id and e.status == status][-1:]
    assert [v for v in entry.violations if v.side == "response"] == []


LETTA_NATURAL: dict[tuple[str, int], Callable[[aiohttp.ClientSession, LettaMock], Awaitable[Answer]]] = {
    ("listAgentsRedirect", 307): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents", token=m.token, allow_redirects=False
    ),
    ("listAgentsRedirect", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents"),
    ("createAgentRedirect", 307): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents", token=m.token, allow_redirects=False
    ),
    ("createAgentRedirect", 401): lambda h, m: call(h, "POST", f"{m.url}/v1/agents"),
    ("listAgents", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/", token="wrong"),
    ("listAgents", 422): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents/", token=m.token, params={"limit": "x"}
    ),
    ("createAgent", 401): lambda h, m: call(h, "POST", f"{m.url}/v1/agents/", json_body={}),
    ("createAgent", 422): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/", token=m.token, json_body={"name": 1}
    ),
    ("createAgent", 500): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/", token=m.token, json_body={"name": "x"}
    ),
    ("createAgent", 400): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/", token=m.token, json_body={"name": "\ud800"}
    ),
    ("retrieveAgent", 400): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/bad-id", token=m.token),
    ("retrieveAgent", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}"),
    ("retrieveAgent", 404): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token),
    ("modifyAgent", 400): lambda h, m: call(
        h, "PATCH", f"{m.url}/v1/agents/{m.add_agents(1)[0].id}", token=m.token, json_body={"name": "\ud800"}
    ),
    ("modifyAgent", 401): lambda h, m: call(h, "PATCH", f"{m.url}/v1/agents/{GHOST_AGENT}", json_body={}),
    ("modifyAgent", 404): lambda h, m: call(
        h, "PATCH", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token, json_body={}
    ),
    ("modifyAgent", 422): lambda h, m: call(
        h, "PATCH", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token, json_body={"tags": 5}
    ),
    ("deleteAgent", 401): lambda h, m: call(h, "DELETE", f"{m.url}/v1/agents/{GHOST_AGENT}"),
    ("deleteAgent", 404): lambda h, m: call(h, "DELETE", f"{m.url}/v1/agents/{GHOST_AGENT}", token=m.token),
    ("listMessages", 401): lambda h, m: call(h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}/messages"),
    ("listMessages", 404): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token
    ),
    ("listMessages", 422): lambda h, m: call(
        h, "GET", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token, params={"limit": "x"}
    ),
    ("sendAgentMessage", 400): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{m.add_agents(1)[0].id}/messages", token=m.token,
        json_body={"messages": [{"role": "user", "content": ""}]},
    ),
    ("sendAgentMessage", 401): lambda h, m: call(h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages"),
    ("sendAgentMessage", 404): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token, json_body=HELLO
    ),
    ("sendAgentMessage", 422): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages", token=m.token, json_body={}
    ),
    ("streamAgentMessage", 401): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages/stream"
    ),
    ("streamAgentMessage", 404): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages/stream", token=m.token, json_body=HELLO
    ),
    ("streamAgentMessage", 422): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{GHOST_AGENT}/messages/stream", token=m.token, json_body={}
    ),
    ("streamAgentMessage", 503): lambda h, m: call(
        h, "POST", f"{m.url}/v1/agents/{m.add_agents(1)[0].id}/messages/stream", token=m.token,
        json_body={**HELLO, "background": True},
    ),
}  # fmt: skip
# As 0.11.7 these take no input FastAPI could refuse; as 0.16.8 a malformed agent id is their 422
# (test_mock_letta_messages.py::test_0_16_8_checks_the_agent_id_on_every_agent_route).
LETTA_FAULT_ONLY = {("retrieveAgent", 422), ("deleteAgent", 422)}
LETTA_CASES = sorted({(op, status) for op, status, _ in _documented("letta") if status >= 300})


def test_every_letta_error_is_either_natural_or_declared_fault_only() -> None:
    fault_only = {case for case in LETTA_CASES if case[1] in FAULT_ONLY_STATUSES} | LETTA_FAULT_ONLY
    assert set(LETTA_CASES) - set(LETTA_NATURAL) - fault_only == set()
    assert set(LETTA_NATURAL) - set(LETTA_CASES) == set(), "a trigger for a status the spec no longer has"


@pytest.mark.parametrize("case", LETTA_CASES, ids=lambda case: f"{case[0]}-{case[1]}")
async def test_letta_answer(
    http: aiohttp.ClientSession, letta_mock: LettaMock, case: tuple[str, int]
) -> None:
    operation_id, status = case
    agent = letta_mock.add_agent("present")
    scenario = LETTA_NATURAL.get(case)
    if scenario is not None:
        answer = await scenario(http, letta_mock)
    else:
        letta_mock.inject(operation_id, status=status)
        paths = {
            "listAgents": ("GET", "/v1/agents/"),
            "createAgent": ("POST", "/v1/agents/"),
            "retrieveAgent": ("GET", f"/v1/agents/{agent.id}"),
            "modifyAgent": ("PATCH", f"/v1/agents/{agent.id}"),
            "deleteAgent": ("DELETE", f"/v1/agents/{agent.id}"),
            "listMessages": ("GET", f"/v1/agents/{agent.id}/messages"),
            "sendAgentMessage": ("POST", f"/v1/agents/{agent.id}/messages"),
            "streamAgentMessage": ("POST", f"/v1/agents/{agent.id}/messages/stream"),
        }
        method, path = paths[operation_id]
        body: dict[str, Any] | None = None
        if method in ("POST", "PATCH"):
            body = (
                HELLO
                if path.endswith(("/messages", "/stream"))
                else {"name": "x", "model": "letta/letta-free"}
            )
        answer = await call(http, method, f"{letta_mock.url}{path}", token=letta_mock.token, json_body=body)
    assert answer.status == status, answer.body
    entries = [e for e in letta_mock.journal() if e.status == status]
    assert entries
    assert all(v.side == "request" for e in entries for v in e.violations)
