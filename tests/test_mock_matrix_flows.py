"""End-to-end Matrix flows over real HTTP against the running mock, the way a bridge drives a homeserver."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from mockgen.pytest_plugin import MatrixMock
from tests.support import call, login, register


async def test_register_with_user_interactive_auth(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    url = f"{matrix_mock.url}/_matrix/client/v3/register"
    first = await call(http, "POST", url, json_body={"username": "Agent_One", "password": "pw"})
    assert first.status == 401
    assert first.body["flows"] == [{"stages": ["m.login.dummy"]}]
    # The session remembers the first request: the second may carry only `auth`.
    second = await call(
        http, "POST", url, json_body={"auth": {"type": "m.login.dummy", "session": first.body["session"]}}
    )
    assert second.status == 200
    assert second.body["user_id"] == "@agent_one:matrix.test"
    assert second.body["access_token"].startswith("syt_")
    whoami = await call(
        http, "GET", f"{matrix_mock.url}/_matrix/client/r0/account/whoami", token=second.body["access_token"]
    )
    assert whoami.body["user_id"] == "@agent_one:matrix.test"
    again = await register(http, matrix_mock.url, "agent_one")
    assert (again.status, again.errcode) == (400, "M_USER_IN_USE")
    assert matrix_mock.calls("register") == 3


async def test_retrying_a_completed_session_returns_the_same_account(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    url = f"{matrix_mock.url}/_matrix/client/v3/register"
    first = await call(http, "POST", url, json_body={"username": "retry", "password": "pw"})
    body = {
        "username": "retry",
        "password": "pw",
        "auth": {"type": "m.login.dummy", "session": first.body["session"]},
    }
    done = await call(http, "POST", url, json_body=body)
    replay = await call(http, "POST", url, json_body=body)
    assert done.status == replay.status == 200
    assert done.body["user_id"] == replay.body["user_id"]
    assert done.body["access_token"] != replay.body["access_token"]


@pytest.mark.parametrize("version", ["r0", "v3"])
@pytest.mark.parametrize(
    "body",
    [
        {"type": "m.login.password", "user": "admin", "password": "admin_password"},
        {"type": "m.login.password", "user": "@ADMIN:matrix.test", "password": "admin_password"},
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "admin"},
            "password": "admin_password",
        },
    ],
)
async def test_login_both_body_forms_both_prefixes(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, version: str, body: dict[str, object]
) -> None:
    answer = await call(http, "POST", f"{matrix_mock.url}/_matrix/client/{version}/login", json_body=body)
    assert answer.status == 200
    assert answer.body["user_id"] == "@admin:matrix.test"
    assert answer.body["well_known"]["m.homeserver"]["base_url"] == matrix_mock.url + "/"


async def test_wrong_password_and_unknown_user_are_the_same_403(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    url = f"{matrix_mock.url}/_matrix/client/v3/login"
    wrong = await call(
        http, "POST", url, json_body={"type": "m.login.password", "user": "admin", "password": "x"}
    )
    ghost = await call(
        http, "POST", url, json_body={"type": "m.login.password", "user": "ghost", "password": "x"}
    )
    assert (
        (wrong.status, wrong.body)
        == (ghost.status, ghost.body)
        == (
            403,
            {"errcode": "M_FORBIDDEN", "error": "Invalid username or password"},
        )
    )


async def test_display_names(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    token = (await register(http, matrix_mock.url, "bot")).body["access_token"]
    url = f"{matrix_mock.url}/_matrix/client/v3/profile/@bot:matrix.test/displayname"
    assert (await call(http, "GET", url)).body == {"displayname": "bot"}
    assert (
        await call(http, "PUT", url, json_body={"displayname": "Bot Ünïcode ✓"}, token=token)
    ).status == 200
    assert (await call(http, "GET", url)).body == {"displayname": "Bot Ünïcode ✓"}
    other = await call(
        http, "PUT", f"{matrix_mock.url}/_matrix/client/v3/profile/@admin:matrix.test/displayname",
        json_body={"displayname": "hijack"}, token=token,
    )  # fmt: skip
    assert (other.status, other.errcode) == (400, "M_FORBIDDEN")
    assert (await call(http, "PUT", url, json_body={"displayname": ""}, token=token)).status == 200
    # Cleared: Synapse answers without the key, not with null.
    assert (await call(http, "GET", url)).body == {}


async def test_space_room_invite_join_and_state(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    base = f"{matrix_mock.url}/_matrix/client/v3"
    admin = await login(http, matrix_mock.url, "admin", "admin_password")
    agent = (await register(http, matrix_mock.url, "agent_a")).body["access_token"]
    bot = await login(http, matrix_mock.url, "letta", "letta")

    space = await call(
        http, "POST", f"{base}/createRoom", token=admin,
        json_body={"name": "Letta Agents", "preset": "private_chat", "creation_content": {"type": "m.space"}},
    )  # fmt: skip
    space_id = space.body["room_id"]
    assert space_id.startswith("!")
    assert ":" not in space_id
    create = await call(http, "GET", f"{base}/rooms/{space_id}/state/m.room.create", token=admin)
    assert create.body == {"room_version": "12", "type": "m.space"}

    room = await call(
        http, "POST", f"{base}/createRoom", token=agent,
        json_body={
            "name": "Agent A", "preset": "private_chat",
            "invite": ["@admin:matrix.test", "@letta:matrix.test"],
        },
    )  # fmt: skip
    room_id = room.body["room_id"]

    not_invited = await call(http, "POST", f"{base}/rooms/{space_id}/join", token=agent, json_body={})
    assert (not_invited.status, not_invited.errcode) == (403, "M_FORBIDDEN")
    assert (await call(http, "POST", f"{base}/rooms/{room_id}/join", token=admin, json_body={})).status == 200
    assert (await call(http, "POST", f"{base}/join/{room_id}", token=bot, json_body={})).body == {
        "room_id": room_id
    }
    assert (
        await call(http, "POST", f"{base}/rooms/{room_id}/join", token=bot)
    ).status == 200  # idempotent, no body

    child = await call(
        http, "PUT", f"{base}/rooms/{space_id}/state/m.space.child/{room_id}", token=admin,
        json_body={"via": ["matrix.test"]},
    )  # fmt: skip
    parent = await call(
        http, "PUT", f"{base}/rooms/{room_id}/state/m.space.parent/{space_id}", token=agent,
        json_body={"via": ["matrix.test"], "canonical": True},
    )  # fmt: skip
    assert child.status == parent.status == 200
    same = await call(
        http, "PUT", f"{base}/rooms/{room_id}/state/m.space.parent/{space_id}", token=agent,
        json_body={"via": ["matrix.test"], "canonical": True},
    )  # fmt: skip
    assert same.body["event_id"] == parent.body["event_id"]
    got = await call(http, "GET", f"{base}/rooms/{space_id}/state/m.space.child/{room_id}", token=bot)
    assert got.status == 403  # the bot was never invited to the space
    got = await call(http, "GET", f"{base}/rooms/{space_id}/state/m.space.child/{room_id}", token=admin)
    assert got.body == {"via": ["matrix.test"]}
    missing = await call(http, "GET", f"{base}/rooms/{room_id}/state/m.room.avatar", token=agent)
    assert (missing.status, missing.errcode) == (404, "M_NOT_FOUND")

    rename = await call(
        http, "PUT", f"{base}/rooms/{room_id}/state/m.room.name", token=admin, json_body={"name": "x"}
    )
    assert (rename.status, rename.errcode) == (403, "M_FORBIDDEN")  # admin is a plain member (PL 0 < 50)
    rename = await call(
        http, "PUT", f"{base}/rooms/{room_id}/state/m.room.name/", token=agent, json_body={"name": "B"}
    )
    assert rename.status == 200
    assert (await call(http, "GET", f"{base}/rooms/{room_id}/state/m.room.name", token=admin)).body == {
        "name": "B"
    }
    full = await call(http, "GET", f"{base}/rooms/{room_id}/state", token=admin)
    kinds = {(event["type"], event["state_key"]) for event in full.body}
    assert ("m.space.parent", space_id) in kinds
    assert ("m.room.member", "@letta:matrix.test") in kinds

    joined = await call(http, "GET", f"{matrix_mock.url}/_matrix/client/r0/joined_rooms", token=bot)
    assert joined.body == {"joined_rooms": [room_id]}
    sent = await call(
        http, "PUT", f"{base}/rooms/{room_id}/send/m.room.message/t1", token=bot,
        json_body={"msgtype": "m.text", "body": "hello"},
    )  # fmt: skip
    replay = await call(
        http, "PUT", f"{base}/rooms/{room_id}/send/m.room.message/t1", token=bot,
        json_body={"msgtype": "m.text", "body": "changed"},
    )  # fmt: skip
    assert sent.body == replay.body

    snapshot = matrix_mock.snapshot()
    rooms = {r["room_id"]: r for r in snapshot["rooms"]}
    assert rooms[space_id]["children"] == [room_id]
    assert rooms[room_id]["parents"] == [space_id]
    assert rooms[room_id]["members"]["@letta:matrix.test"] == "join"


@pytest.mark.mock_lenient
async def test_invites(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    base = f"{matrix_mock.url}/_matrix/client/v3"
    admin = await login(http, matrix_mock.url, "admin", "admin_password")
    room_id = (await call(http, "POST", f"{base}/createRoom", token=admin, json_body={})).body["room_id"]
    invite_url = f"{base}/rooms/{room_id}/invite"
    assert (
        await call(http, "POST", invite_url, token=admin, json_body={"user_id": "@letta:matrix.test"})
    ).status == 200
    assert (
        await call(http, "POST", invite_url, token=admin, json_body={"user_id": "@letta:matrix.test"})
    ).status == 200
    ghost = await call(http, "POST", invite_url, token=admin, json_body={"user_id": "@ghost:matrix.test"})
    assert ghost.status == 200  # Synapse lets you invite a local user who does not exist
    joined = await call(http, "POST", invite_url, token=admin, json_body={"user_id": "@admin:matrix.test"})
    assert (joined.status, joined.body["error"]) == (403, "@admin:matrix.test is already in the room.")
    bad = await call(http, "POST", invite_url, token=admin, json_body={"user_id": "notauser"})
    assert (bad.status, bad.errcode) == (400, "M_INVALID_PARAM")
    unknown = await call(
        http, "POST", f"{base}/rooms/!nope/invite", token=admin, json_body={"user_id": "@a:b"}
    )
    assert (unknown.status, unknown.body["error"]) == (403, "Unknown room")


async def test_concurrent_registrations_of_one_name(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    url = f"{matrix_mock.url}/_matrix/client/v3/register"
    body = {"username": "racer", "password": "pw", "auth": {"type": "m.login.dummy"}}
    answers = await asyncio.gather(*(call(http, "POST", url, json_body=body) for _ in range(100)))
    statuses = sorted((a.status, a.errcode) for a in answers)
    assert statuses.count((200, None)) == 1
    assert statuses.count((400, "M_USER_IN_USE")) == 99


@pytest.mark.mock_lenient
async def test_which_error_wins_at_login(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    """Synapse looks at device_id's type only once the credentials pass (B13): a wrong password is the 403,
    the right one the 400 — and no device is made."""
    url = f"{matrix_mock.url}/_matrix/client/v3/login"
    body = {"type": "m.login.password", "user": "letta", "device_id": 5}
    wrong = await call(http, "POST", url, json_body={**body, "password": "wrong"})
    assert (wrong.status, wrong.errcode) == (403, "M_FORBIDDEN")
    right = await call(http, "POST", url, json_body={**body, "password": "letta"})
    assert (right.status, right.errcode) == (400, "M_INVALID_PARAM")
    assert matrix_mock.world.matrix.user_by_name("letta").devices == {}
    # A user named nowhere is still refused, after the password's type.
    nobody = await call(http, "POST", url, json_body={"type": "m.login.password", "password": 5})
    assert (nobody.status, nobody.errcode) == (400, "M_INVALID_PARAM")
    assert "password" in nobody.body["error"]
