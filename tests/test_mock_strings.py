"""Lone UTF-16 surrogates (`"\\ud800"` in JSON text) are refused where request JSON is decoded, in each
service's words, and leave the store, the journal and the snapshots readable (issue 12, probes A/LA)."""

from __future__ import annotations

import json

import aiohttp
import pytest

from contracts.validation import UnencodableText, parse_json
from mockgen.pytest_plugin import LettaMock, MatrixMock
from mockgen.store import letta as letta_store
from mockgen.store.errors import MatrixError, UserInteractiveAuthRequired
from mockgen.store.letta import LettaStore
from mockgen.store.matrix import MatrixStore
from tests.support import call, login

# Every test sends what the contract refuses.
pytestmark = pytest.mark.mock_lenient

SURROGATE = "\ud800"
ENCODE_ERROR = "'utf-8' codec can't encode character '\\ud800' in position {}: surrogates not allowed"


async def _readable_views(http: aiohttp.ClientSession, mock: MatrixMock | LettaMock) -> None:
    for view in ("journal", "state"):
        answer = await call(http, "GET", f"{mock.url}/_mock/{view}", headers=mock.control_headers)
        assert answer.status == 200, (view, answer)
        json.dumps(answer.body).encode("utf-8")


def test_parse_json_refuses_lone_surrogates_anywhere() -> None:
    for text in ('"\\ud800"', '{"\\udc00": 1}', '[[{"a": ["x\\uD800"]}]]'):
        with pytest.raises(UnencodableText):
            parse_json(text.encode())
    assert parse_json(b'["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001f600", "\\ud800"]


async def test_matrix_displayname_surrogate_is_not_json_and_profile_stays_readable(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    base = f"{matrix_mock.url}/_matrix/client/v3"
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    url = f"{base}/profile/@admin:{matrix_mock.server_name}/displayname"
    before = await call(http, "GET", url)
    refused = await call(http, "PUT", url, json_body={"displayname": SURROGATE}, token=token)
    assert (refused.status, refused.errcode) == (400, "M_NOT_JSON")
    after = await call(http, "GET", url)
    assert (after.status, after.body) == (before.status, before.body)
    room = await call(http, "POST", f"{base}/createRoom", json_body={}, token=token)
    assert room.status == 200
    await _readable_views(http, matrix_mock)


async def test_matrix_login_with_surrogate_user_keeps_the_journal_readable(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    body = {"type": "m.login.password", "user": SURROGATE, "password": "x"}
    answer = await call(http, "POST", f"{matrix_mock.url}/_matrix/client/v3/login", json_body=body)
    assert (answer.status, answer.errcode) == (400, "M_NOT_JSON")
    # A surrogate in a key counts too, even one the server ignores.
    keyed = {"type": "m.login.password", "user": "admin", "password": "admin_password", SURROGATE: 1}
    answer = await call(http, "POST", f"{matrix_mock.url}/_matrix/client/v3/login", json_body=keyed)
    assert (answer.status, answer.errcode) == (400, "M_NOT_JSON")
    await _readable_views(http, matrix_mock)


async def test_matrix_createroom_with_surrogate_builds_no_room(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    base = f"{matrix_mock.url}/_matrix/client/v3"
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    joined = await call(http, "GET", f"{base}/joined_rooms", token=token)
    for body in ({"name": SURROGATE}, {"room_alias_name": SURROGATE}, {"invite": [SURROGATE]}):
        refused = await call(http, "POST", f"{base}/createRoom", json_body=body, token=token)
        assert (refused.status, refused.errcode) == (400, "M_NOT_JSON")
    assert (await call(http, "GET", f"{base}/joined_rooms", token=token)).body == joined.body


async def test_letta_patch_with_surrogate_is_refused_and_the_list_stays_readable(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    [agent] = letta_mock.add_agents(1)
    url = f"{letta_mock.url}/v1/agents/{agent.id}"
    refused = await call(http, "PATCH", url, json_body={"name": "ab" + SURROGATE}, token=letta_mock.token)
    assert (refused.status, refused.body) == (400, {"detail": ENCODE_ERROR.format(2)})
    listed = await call(http, "GET", f"{letta_mock.url}/v1/agents/", token=letta_mock.token)
    assert listed.status == 200
    assert [a["name"] for a in listed.body] == [agent.name]
    created = await call(
        http,
        "POST",
        f"{letta_mock.url}/v1/agents/",
        json_body={"name": "x", "model": "letta/letta-free", "metadata": {SURROGATE: 1}},
        token=letta_mock.token,
    )
    assert (created.status, created.body) == (400, {"detail": ENCODE_ERROR.format(0)})
    assert len(letta_mock.world.letta.list_agents()) == 1
    await _readable_views(http, letta_mock)


async def test_letta_token_is_checked_before_the_body(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    [agent] = letta_mock.add_agents(1)
    url = f"{letta_mock.url}/v1/agents/{agent.id}"
    answer = await call(http, "PATCH", url, json_body={"name": SURROGATE}, token="wrong")
    assert (answer.status, answer.body) == (401, {"detail": "Unauthorized"})


# -- all or nothing: a store write that fails half-way leaves nothing behind


def test_createroom_refused_before_the_room_exists_stores_nothing() -> None:
    """Synapse checks the room version, the preset, the alias and the invitees' ids before it makes the room;
    a createRoom refused there leaves nothing (one refused later leaves the room, as on Synapse: see
    tests/test_store_matrix_rooms_fidelity.py)."""
    store = MatrixStore("matrix.test", seed=1)
    store.add_user("creator", "pw")
    creator = store.user_by_name("creator")
    rooms, aliases = dict(store.rooms), dict(store.aliases)
    for body in (
        {"room_alias_name": "kept", "room_version": "99"},
        {"room_alias_name": "kept", "invite": ["not-a-user-id"]},
    ):
        with pytest.raises(MatrixError):
            store.create_room(creator, body)
        assert (store.rooms, store.aliases) == (rooms, aliases)
        assert store.joined_rooms(creator) == []
    room_id = store.create_room(creator, {"room_alias_name": "kept"})
    assert store.joined_rooms(creator) == [room_id]


def test_register_whose_device_fails_keeps_no_account(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MatrixStore("matrix.test", seed=1)
    with pytest.raises(UserInteractiveAuthRequired) as started:
        store.register({"username": "solo", "password": "pw"})
    session = started.value.body["session"]

    def failing(localpart: str) -> str:
        raise RuntimeError("device storage failed")

    monkeypatch.setattr(store._ids, "access_token", failing)
    with pytest.raises(RuntimeError):
        store.register({"auth": {"type": "m.login.dummy", "session": session}})
    assert "@solo:matrix.test" not in store.users
    assert store.username_available("solo")
    monkeypatch.undo()
    answer = store.register({"auth": {"type": "m.login.dummy", "session": session}})
    assert answer["user_id"] == "@solo:matrix.test"
    assert store.authenticate(answer["access_token"])[0].user_id == "@solo:matrix.test"


def test_login_whose_token_fails_adds_no_device(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MatrixStore("matrix.test", seed=1)
    store.add_user("solo", "pw")
    user = store.user_by_name("solo")
    devices = dict(user.devices)

    def failing(localpart: str) -> str:
        raise RuntimeError("token minting failed")

    monkeypatch.setattr(store._ids, "access_token", failing)
    with pytest.raises(RuntimeError):
        store.login(user="solo", password="pw", device_id="NEWDEVICE")
    assert user.devices == devices


def test_agent_patch_that_fails_half_way_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    store = LettaStore(seed=3)
    agent = store.create("before", tags=["a"])
    before = agent.to_json()

    def failing(value: object) -> object:
        raise RecursionError("too deep to copy")

    # `metadata` is copied after the name and tags are worked out.
    monkeypatch.setattr(f"{letta_store.__name__}.copy.deepcopy", failing)
    with pytest.raises(RecursionError):
        store.modify(agent.id, {"name": "after", "tags": ["b"], "metadata": {"k": 1}})
    monkeypatch.undo()
    assert store.retrieve(agent.id) == before
