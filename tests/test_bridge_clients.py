"""The bridge's Letta and Matrix clients: paging, the registration dance, ids in paths, lost createRooms,
what is logged. Against the strict mocks, and against small hand-made servers for what no contract-abiding
server would do (loop its cursors, answer non-JSON). Retries and lost connections: test_bridge_retries.py."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web

from letta_matrix_reference.bridge import ApiError, ConfigurationError, ProtocolError
from letta_matrix_reference.bridge.http import JsonClient
from letta_matrix_reference.bridge.matrix import CreatedRoom
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import CLIENT_TIMEOUT, Sleeps, homeserver, letta_client, policy

TIMEOUT = 5.0


# -- Letta


@pytest.mark.parametrize("count", [0, 1, 50, 100, 101, 250])
@pytest.mark.parametrize("fmt", ["array", "envelope"])
async def test_listing_returns_every_agent_once(
    letta_mock: LettaMock, sleeps: Sleeps, count: int, fmt: str
) -> None:
    letta_mock.set_format(agents=fmt)
    created = [agent.id for agent in letta_mock.add_agents(count)]
    async with letta_client(letta_mock.url, letta_mock.token, sleeps) as letta:
        listing = await letta.list_agents()
    assert [agent.id for agent in listing.agents] == created[::-1]  # newest first
    assert listing.complete
    full, rest = divmod(count, 50)
    assert letta_mock.calls("listAgents") == (full + 1 if fmt == "array" else max(1, full + (rest > 0)))
    queries = [entry.query for entry in letta_mock.journal("listAgents")]
    assert all("limit=50" in query for query in queries)
    assert "after=" not in queries[0]


async def test_listing_stops_at_max_pages_and_says_it_is_incomplete(
    letta_mock: LettaMock, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    letta_mock.add_agents(5)
    async with letta_client(letta_mock.url, letta_mock.token, sleeps, page_limit=2, max_pages=2) as letta:
        listing = await letta.list_agents()
    assert (len(listing.agents), listing.complete) == (4, False)
    assert "stopped listing Letta agents after 2 pages" in caplog.text


def _pages(pages: dict[str | None, Any]) -> web.Application:
    """A Letta list route answering `pages[after]`."""
    app = web.Application()

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(pages[request.query.get("after")])

    app.router.add_get("/v1/agents/", listing)
    return app


def _agent(n: int) -> dict[str, str]:
    return {
        "id": f"agent-00000000-0000-4000-8000-{n:012d}",
        "name": f"a{n}",
        "created_at": "2026-11-22T07:15:10",
    }


async def test_listing_stops_on_a_repeated_cursor(fake: Any, sleeps: Sleeps) -> None:
    one, two = _agent(1), _agent(2)
    pages = {None: {"data": [one], "cursor": one["id"]}, one["id"]: {"data": [two], "cursor": one["id"]}}
    async with letta_client(await fake(_pages(pages)), "t", sleeps) as letta:
        listing = await letta.list_agents()
    assert [agent.name for agent in listing.agents] == ["a1", "a2"]
    assert not listing.complete


async def test_listing_drops_agents_seen_on_an_earlier_page(fake: Any, sleeps: Sleeps) -> None:
    one, two, three = _agent(1), _agent(2), _agent(3)
    pages = {None: [one, two], two["id"]: [two, three], three["id"]: []}
    async with letta_client(await fake(_pages(pages)), "t", sleeps, page_limit=2) as letta:
        listing = await letta.list_agents()
    assert [agent.name for agent in listing.agents] == ["a1", "a2", "a3"]
    assert listing.complete


async def test_an_envelope_without_cursor_pages_like_an_array(fake: Any, sleeps: Sleeps) -> None:
    one, two, three = _agent(1), _agent(2), _agent(3)
    pages = {None: {"data": [one, two]}, two["id"]: {"data": [three]}}
    async with letta_client(await fake(_pages(pages)), "t", sleeps, page_limit=2) as letta:
        assert [agent.name for agent in (await letta.list_agents()).agents] == ["a1", "a2", "a3"]


@pytest.mark.parametrize("body", [{"agents": []}, [{"id": 1, "name": "x"}], {"data": [], "cursor": 5}])
async def test_a_listing_that_breaks_the_contract_is_a_protocol_error(
    fake: Any, sleeps: Sleeps, body: Any
) -> None:
    async with letta_client(await fake(_pages({None: body})), "t", sleeps) as letta:
        with pytest.raises(ProtocolError):
            await letta.list_agents()


async def test_a_refused_letta_token_is_a_configuration_error(letta_mock: LettaMock, sleeps: Sleeps) -> None:
    async with letta_client(letta_mock.url, "wrong", sleeps) as letta:
        with pytest.raises(ConfigurationError, match="refused the token"):
            await letta.list_agents()


# -- Matrix


async def test_registration_runs_the_user_interactive_auth_dance(
    matrix_mock: MatrixMock, sleeps: Sleeps
) -> None:
    async with homeserver(matrix_mock.url, sleeps) as server:
        client = await server.register("agent_x", "pw")
        assert client.user_id == "@agent_x:matrix.test"
        assert await client.joined_rooms() == []  # its token works
    first, second = matrix_mock.journal("register")
    assert first.status == 401
    assert "auth" not in first.request_body
    session = first.response_body["session"]
    assert second.request_body["auth"] == {"type": "m.login.dummy", "session": session}
    assert second.status == 200


async def test_a_homeserver_without_open_registration(fake: Any, sleeps: Sleeps) -> None:
    app = web.Application()

    async def register(request: web.Request) -> web.Response:
        return web.json_response({"session": "s", "flows": [{"stages": ["m.login.recaptcha"]}]}, status=401)

    app.router.add_post("/_matrix/client/v3/register", register)
    async with homeserver(await fake(app), sleeps) as server:
        with pytest.raises(ConfigurationError, match="does not offer open registration"):
            await server.register("agent_x", "pw")


async def test_an_answer_with_a_token_is_never_quoted_in_an_error(fake: Any, sleeps: Sleeps) -> None:
    app = web.Application()

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"user_id": "@a:x", "access_token": "syt_SECRET", "device_id": None})

    app.router.add_post("/_matrix/client/v3/login", login)
    async with homeserver(await fake(app), sleeps) as server:
        with pytest.raises(ProtocolError) as raised:
            await server.login("a", "pw")
    message = str(raised.value)
    assert "no string 'device_id'" in message
    assert "'access_token'" in message  # the keys are named, never their values
    assert "syt_SECRET" not in message


async def test_a_forgotten_token_means_one_new_login(matrix_mock: MatrixMock, sleeps: Sleeps) -> None:
    async with homeserver(matrix_mock.url, sleeps) as server:
        admin = await server.login("admin", "admin_password")
        stale, device = admin.credentials.access_token, admin.credentials.device_id
        # A password reset by the admin API logs every device out: our token is now unknown.
        world = matrix_mock.world.matrix
        owner = world.user_by_name("admin")
        world.admin_put_user(owner, owner.user_id, {"password": "admin_password"})
        assert await admin.joined_rooms() == []
        assert admin.credentials.device_id == device
        assert admin.credentials.access_token != stale
    assert matrix_mock.calls("login") == 2
    [refused] = [entry for entry in matrix_mock.journal("getJoinedRooms") if entry.status == 401]
    assert refused.response_body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_ids_in_paths_are_encoded(matrix_mock: MatrixMock, sleeps: Sleeps) -> None:
    """Ids with characters that mean something in a URL reach the server as one path segment each. The
    journal holds the path as sent (percent-encoded), so this sees what was on the wire."""
    key = "!a/b?c%2Fd#e:matrix.test"  # a state key may be any string; "%2F" must not come out as "/"
    user = "@fresh/one:matrix.test"  # "/" is allowed in a localpart
    async with homeserver(matrix_mock.url, sleeps) as server:
        admin = await server.login("admin", "admin_password")
        room = (await admin.create_room({"name": "r"})).room_id
        await admin.put_state(room, "m.space.child", key, {"via": ["matrix.test"]})
        assert await admin.get_state(room, "m.space.child", key) == {"via": ["matrix.test"]}
        assert await admin.admin_put_user(user, {"password": "pw"}) is True
        assert (await admin.admin_get_user(user))["name"] == user
    state_path = f"/_matrix/client/v3/rooms/{room}/state/m.space.child/"
    for operation, prefix, value in [
        ("setRoomStateWithKey", state_path, key),
        ("getRoomStateWithKey", state_path, key),
        ("adminPutUser", "/_synapse/admin/v2/users/", user),
        ("adminGetUser", "/_synapse/admin/v2/users/", user),
    ]:
        [entry] = matrix_mock.journal(operation)
        assert entry.path.startswith(prefix), entry.path
        segment = entry.path.removeprefix(prefix)
        assert not {"/", "?", "#"} & set(segment), entry.path
        assert unquote(segment) == value
        assert entry.query == ""
        assert entry.status in (200, 201)
    assert ("m.space.child", key) in matrix_mock.world.matrix.rooms[room].state
    assert user in matrix_mock.world.matrix.users


LOST_ANSWERS: dict[str, tuple[dict[str, Any], float]] = {
    "dropped": ({"drop_connection": True}, CLIENT_TIMEOUT),
    "5xx": ({"status": 500}, CLIENT_TIMEOUT),
    "timeout": ({"latency_ms": 1000, "status": 500}, 0.2),
}


@pytest.mark.parametrize("lost", LOST_ANSWERS)
async def test_a_lost_createroom_is_looked_for_longer_than_a_request_may_take(
    matrix_mock: MatrixMock, sleeps: Sleeps, lost: str
) -> None:
    """The server may still be working on a request whose answer was lost: before sending createRoom
    again the client looks for the room at once, then after pauses that double, until more than the
    request timeout has passed."""
    fault, timeout = LOST_ANSWERS[lost]
    looks = 0

    async def never_there() -> str | None:
        nonlocal looks
        looks += 1
        return None

    async with homeserver(matrix_mock.url, sleeps, timeout=timeout) as server:
        admin = await server.login("admin", "admin_password")
        matrix_mock.inject("createRoom", **fault)
        room = await admin.create_room({"name": "r"}, find_existing=never_there)
    assert room.made
    assert looks == 5
    assert sleeps.delays == [timeout / 8, timeout / 4, timeout / 2, timeout]
    assert sum(sleeps.delays) > timeout
    assert [entry.status for entry in matrix_mock.journal("createRoom") if entry.status == 200] == [200]


async def test_a_lost_createroom_found_while_looking_is_not_sent_again(
    matrix_mock: MatrixMock, sleeps: Sleeps
) -> None:
    looks = 0

    async def there_at_the_third_look() -> str | None:
        nonlocal looks
        looks += 1
        return "!made-late" if looks == 3 else None

    async with homeserver(matrix_mock.url, sleeps) as server:
        admin = await server.login("admin", "admin_password")
        matrix_mock.inject("createRoom", drop_connection=True)
        room = await admin.create_room({"name": "r"}, find_existing=there_at_the_third_look)
    assert room == CreatedRoom("!made-late", made=False)
    assert sleeps.delays == [CLIENT_TIMEOUT / 8, CLIENT_TIMEOUT / 4]
    assert matrix_mock.calls("createRoom") == 1


async def test_operators_get_power_level_100_and_the_creator_is_listed_only_when_asked(
    matrix_mock: MatrixMock, sleeps: Sleeps
) -> None:
    """Room version 12 refuses a creator in the power levels' `users` (creators outrank every level);
    Synapse refuses an override without the creator for older versions, before making anything."""
    admin_id, bot_id = "@admin:matrix.test", "@letta:matrix.test"
    older = "Not a valid power_level_content_override: 'users' did not contain @admin:matrix.test"
    async with homeserver(matrix_mock.url, sleeps) as server:
        admin = await server.login("admin", "admin_password")
        modern = await admin.create_room({"name": "v12"}, operators=[admin_id, bot_id])
        matrix_mock.inject("createRoom", status=400, body={"errcode": "M_UNKNOWN", "error": "injected"})
        with pytest.raises(ApiError, match="injected"):  # any other 400 is not about the override
            await admin.create_room({"name": "bad"}, operators=[admin_id, bot_id])
        matrix_mock.inject("createRoom", status=400, body={"errcode": "M_UNKNOWN", "error": older})
        await admin.create_room({"name": "older"}, operators=[admin_id, bot_id])
        await admin.create_room({"name": "learnt"}, operators=[admin_id, bot_id])
        await admin.create_room({"name": "alone"}, operators=[admin_id])
    overrides = [
        entry.request_body.get("power_level_content_override") for entry in matrix_mock.journal("createRoom")
    ]
    assert overrides == [
        {"users": {bot_id: 100}},
        {"users": {bot_id: 100}},
        {"users": {bot_id: 100}},
        {"users": {bot_id: 100, admin_id: 100}},
        {"users": {bot_id: 100, admin_id: 100}},
        None,  # nobody but the creator: nothing to override
    ]
    assert matrix_mock.world.matrix.rooms[modern.room_id].power_level(bot_id) == 100


async def test_nothing_secret_is_logged(
    matrix_mock: MatrixMock, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    matrix_mock.inject("register", status=500)
    async with homeserver(matrix_mock.url, sleeps) as server:
        client = await server.register("agent_y", "s3cret-pw")
        await client.joined_rooms()
    assert "s3cret-pw" not in caplog.text
    assert client.credentials.access_token not in caplog.text
    assert "s3cret-pw" not in repr(client) + repr(client.credentials)


async def test_json_client_base_service_name(fake: Any, sleeps: Sleeps) -> None:
    app = web.Application()

    async def teapot(request: web.Request) -> web.Response:
        return web.json_response({"detail": "no"}, status=418)

    app.router.add_get("/x", teapot)
    async with JsonClient(await fake(app), timeout=CLIENT_TIMEOUT, retry=policy(), sleep=sleeps) as client:
        with pytest.raises(ApiError, match="http GET /x answered 418: no"):
            await client.request("GET", "/x")


async def test_no_aiohttp_error_leaves_the_client(fake: Any, sleeps: Sleeps) -> None:
    app = web.Application()

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v1/agents/")

    app.router.add_get("/v1/agents/", loop)
    async with letta_client(await fake(app), "t", sleeps) as letta:
        with pytest.raises(ProtocolError, match="TooManyRedirects"):
            await letta.list_agents()
