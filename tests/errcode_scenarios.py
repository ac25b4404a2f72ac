"""The Matrix errcode scenarios of tests/test_mock_errcodes.py, as data: for every (operation, status,
errcode) the mock reaches from state, the requests that get there (NATURAL), and the answers only a fault
produces (FAULT_ONLY)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from mockgen.pytest_plugin import MatrixMock
from tests.support import Answer, call, login, register


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
