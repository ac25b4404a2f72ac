"""Who and what a user sees of other users over /sync and /messages, as Synapse 1.163.2 answered the issue 13
probes (each kept as a corpus step, `lazy: ...`, `visibility: ...`, `presence: ...`): lazily loaded member
events and the room summary, history visibility (`joined`, `invited`, `world_readable`, `shared`) for a user
who joins late or leaves, and the presence of room-mates."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import nio
import pytest

from contracts.validation import validator_for
from mockgen.pytest_plugin import MatrixMock
from tests.nio_flow import bounded, login
from tests.support import Answer, call, register
from tests.sync_support import until_waiting

pytestmark = pytest.mark.mock_lenient


@dataclass
class Users:
    http: aiohttp.ClientSession
    base: str
    tokens: dict[str, str]
    ids: dict[str, str]

    async def req(self, method: str, path: str, who: str, body: Any = None, **params: Any) -> Answer:
        query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        url = f"{self.base}{path}"
        return await call(self.http, method, url, token=self.tokens[who], json_body=body, params=query)

    async def sync(self, who: str, **params: Any) -> dict[str, Any]:
        answer = await self.req("GET", "/sync", who, **params)
        assert answer.status == 200, answer
        body: dict[str, Any] = answer.body
        return body

    async def room(self, who: str, **body: Any) -> str:
        answer = await self.req("POST", "/createRoom", who, {"preset": "public_chat", **body})
        room_id: str = answer.body["room_id"]
        return room_id

    async def send(self, who: str, room_id: str, text: str) -> None:
        body = {"msgtype": "m.text", "body": text}
        answer = await self.req("PUT", f"/rooms/{room_id}/send/m.room.message/{text}", who, body)
        assert answer.status == 200, answer

    async def join(self, who: str, room_id: str) -> None:
        assert (await self.req("POST", f"/join/{room_id}", who, {})).status == 200

    def short(self, events: list[dict[str, Any]]) -> list[str]:
        """Events as `type` or `type[user]=membership` or `body`, with user ids by name."""
        names = {user_id: name for name, user_id in self.ids.items()}
        shown = []
        for event in events:
            if event["type"] == "m.room.message":
                shown.append(event["content"]["body"])
            elif event["type"] == "m.room.member":
                shown.append(f"member[{names[event['state_key']]}]={event['content']['membership']}")
            else:
                shown.append(event["type"])
        return shown


@pytest.fixture
async def users(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Users:
    tokens, ids = {}, {}
    for name in ("a", "b", "c", "d"):
        answer = await register(http, matrix_mock.url, name)
        tokens[name], ids[name] = answer.body["access_token"], answer.body["user_id"]
    return Users(http, f"{matrix_mock.url}/_matrix/client/v3", tokens, ids)


def lazy(room_id: str, limit: int = 2, **state: bool) -> dict[str, Any]:
    return {
        "room": {
            "rooms": [room_id],
            "timeline": {"limit": limit},
            "state": {"lazy_load_members": True, **state},
        }
    }


def members(users: Users, room: dict[str, Any]) -> list[str]:
    return sorted(e for e in users.short(room["state"]["events"]) if e.startswith("member"))


# -- lazy loading


async def test_lazy_loading_sends_the_senders_and_the_heroes(users: Users) -> None:
    room_id = await users.room("a")
    await users.join("b", room_id)
    await users.join("c", room_id)
    await users.req("POST", f"/rooms/{room_id}/invite", "a", {"user_id": users.ids["d"]})
    await users.send("a", room_id, "a0")
    await users.send("b", room_id, "b0")
    plain = await users.sync("a", filter={"room": {"rooms": [room_id], "timeline": {"limit": 2}}})
    assert len(members(users, plain["rooms"]["join"][room_id])) == 4
    assert plain["rooms"]["join"][room_id]["summary"] == {}

    first = (await users.sync("a", filter=lazy(room_id)))["rooms"]["join"][room_id]
    # senders a and b, the user a, and the heroes b, c, d of this unnamed room
    assert members(users, first) == ["member[a]=join", "member[b]=join", "member[c]=join", "member[d]=invite"]
    heroes = [users.ids[name] for name in ("b", "c", "d")]
    assert first["summary"] == {"m.joined_member_count": 3, "m.invited_member_count": 1, "m.heroes": heroes}

    await users.req("PUT", f"/rooms/{room_id}/state/m.room.name", "a", {"name": "Named"})
    await users.send("c", room_id, "c0")
    named = (await users.sync("a", filter=lazy(room_id)))["rooms"]["join"][room_id]
    # a named room has no heroes; b sent nothing in the timeline, so no member event of his
    assert members(users, named) == ["member[a]=join", "member[c]=join"]
    assert named["summary"] == {"m.joined_member_count": 3, "m.invited_member_count": 1}


async def test_lazy_loading_leaves_out_what_the_device_was_sent(users: Users) -> None:
    room_id = await users.room("a", name="Lazy")
    await users.join("b", room_id)
    await users.send("b", room_id, "b0")
    since = (await users.sync("a", filter=lazy(room_id)))["next_batch"]
    await users.send("b", room_id, "b1")
    again_answer = await users.sync("a", since=since, filter=lazy(room_id))
    again, again_batch = again_answer["rooms"]["join"][room_id], again_answer["next_batch"]
    assert users.short(again["timeline"]["events"]) == ["b1"]
    assert (members(users, again), again["summary"]) == ([], {})  # b's member event came with the first
    redundant = lazy(room_id, include_redundant_members=True)
    full = (await users.sync("a", since=since, filter=redundant))["rooms"]["join"][room_id]
    assert members(users, full) == ["member[b]=join"]
    await users.join("c", room_id)
    joined = await users.sync("a", since=again_batch, filter=lazy(room_id))
    room = joined["rooms"]["join"][room_id]
    # a member event first in the timeline: the summary, and its sender's member event in state too
    assert users.short(room["timeline"]["events"]) == ["member[c]=join"]
    assert members(users, room) == ["member[c]=join"]
    assert room["summary"] == {"m.joined_member_count": 3, "m.invited_member_count": 0}


async def test_a_room_alone_has_no_heroes_and_one_left_has_the_gone(users: Users) -> None:
    room_id = await users.room("a")
    alone = (await users.sync("a", filter=lazy(room_id)))["rooms"]["join"][room_id]
    assert alone["summary"]["m.heroes"] == []
    await users.join("b", room_id)
    await users.req("POST", f"/rooms/{room_id}/leave", "b", {})
    gone = (await users.sync("a", filter=lazy(room_id)))["rooms"]["join"][room_id]
    assert gone["summary"] == {
        "m.joined_member_count": 1,
        "m.invited_member_count": 0,
        "m.heroes": [users.ids["b"]],
    }
    # the first timeline event is b's join: lazy loading sends it in state too
    assert members(users, gone) == ["member[a]=join", "member[b]=join"]


async def test_messages_lazy_loads_the_chunks_senders(users: Users) -> None:
    room_id = await users.room("a")
    await users.join("b", room_id)
    await users.send("b", room_id, "b0")
    await users.send("a", room_id, "a0")
    path = f"/rooms/{room_id}/messages"
    page = (await users.req("GET", path, "a", dir="b", limit="2", filter={"lazy_load_members": True})).body
    assert sorted(users.short(page["state"])) == ["member[a]=join", "member[b]=join"]
    assert "room_id" in page["state"][0]  # the legacy format of /messages
    plain = (await users.req("GET", path, "a", dir="b", limit="2")).body
    assert "state" not in plain
    start = (await users.req("GET", path, "a", dir="f", limit="1", filter={"lazy_load_members": True})).body
    assert "state" not in start  # the create event's sender had no member event yet
    empty = (await users.req("GET", path, "a", dir="b", limit="0")).body
    assert (empty["chunk"], empty["end"]) == ([], empty["start"])


async def test_nio_reads_the_lazy_summary(matrix_mock: MatrixMock) -> None:
    alice = matrix_mock.add_user("alice", "alice-pw")
    bob = matrix_mock.add_user("bob", "bob-pw")
    client = await login(matrix_mock.url, alice, "alice-pw")
    try:
        created = await bounded(client.room_create(preset=nio.RoomPreset.public_chat, invite=[bob]))
        assert isinstance(created, nio.RoomCreateResponse), created
        answer = await bounded(
            client.sync(timeout=0, sync_filter={"room": {"state": {"lazy_load_members": True}}})
        )
        assert isinstance(answer, nio.SyncResponse), answer
        summary = answer.rooms.join[created.room_id].summary
        assert (summary.joined_member_count, summary.invited_member_count, summary.heroes) == (1, 1, [bob])
    finally:
        await bounded(client.close())
    assert matrix_mock.violations() == []


@pytest.mark.parametrize(
    "summary",
    [{"m.heroes": "@b:matrix.test"}, {"m.joined_member_count": -1}, {"heroes": []}],
    ids=["heroes-not-a-list", "negative-count", "unknown-key"],
)
def test_a_wrong_summary_breaks_the_contract(summary: dict[str, Any]) -> None:
    validator = validator_for("matrix")
    room = {
        "timeline": {"events": [], "prev_batch": "s1", "limited": False},
        "state": {"events": []},
        "account_data": {"events": []},
        "ephemeral": {"events": []},
        "unread_notifications": {"notification_count": 0, "highlight_count": 0},
        "summary": summary,
    }
    body = {"next_batch": "s1", "device_one_time_keys_count": {}, "device_unused_fallback_key_types": []}
    body["rooms"] = {"join": {"!r:matrix.test": room}}
    assert validator.check_body(validator.operations["sync"], 200, body) != []


@pytest.mark.parametrize(
    "event",
    [
        {"type": "m.presence", "sender": "@b:matrix.test", "content": {"presence": "away"}},
        {"type": "m.presence", "content": {"presence": "online"}},
        {"type": "m.typing", "sender": "@b:matrix.test", "content": {"presence": "online"}},
        {
            "type": "m.presence",
            "sender": "@b:matrix.test",
            "content": {"presence": "online", "last_active_ago": -5},
        },
    ],
    ids=["unknown-state", "no-sender", "not-presence", "negative-age"],
)
def test_a_wrong_presence_event_breaks_the_contract(event: dict[str, Any]) -> None:
    validator = validator_for("matrix")
    body = {"next_batch": "s1", "device_one_time_keys_count": {}, "device_unused_fallback_key_types": []}
    body["presence"] = {"events": [event]}
    assert validator.check_body(validator.operations["sync"], 200, body) != []


# -- history visibility


async def _history_room(users: Users, visibility: str) -> tuple[str, str]:
    """a's room: a message, the visibility set, a message, b invited, a message, b joins, a message."""
    room_id = await users.room("a")
    await users.send("a", room_id, "before vis")
    content = {"history_visibility": visibility}
    await users.req("PUT", f"/rooms/{room_id}/state/m.room.history_visibility", "a", content)
    await users.send("a", room_id, "before invite")
    since = (await users.sync("b"))["next_batch"]
    await users.req("POST", f"/rooms/{room_id}/invite", "a", {"user_id": users.ids["b"]})
    await users.send("a", room_id, "while invited")
    await users.join("b", room_id)
    await users.send("a", room_id, "after join")
    return room_id, since


MESSAGES = ["before vis", "before invite", "while invited", "after join"]


@pytest.mark.parametrize(
    ("visibility", "seen"),
    [
        ("joined", ["before vis", "after join"]),
        ("invited", ["before vis", "while invited", "after join"]),
        ("world_readable", MESSAGES),
        ("shared", MESSAGES),
    ],
)
async def test_history_visibility_on_messages_and_sync(
    users: Users, visibility: str, seen: list[str]
) -> None:
    room_id, since = await _history_room(users, visibility)
    back = (await users.req("GET", f"/rooms/{room_id}/messages", "b", dir="b", limit="50")).body
    assert [e for e in reversed(users.short(back["chunk"])) if e in MESSAGES] == seen
    # the visibility change itself is always seen, and b's own join
    assert "m.room.history_visibility" in users.short(back["chunk"])
    assert "member[b]=join" in users.short(back["chunk"])
    limit = {"room": {"timeline": {"limit": 50}}}
    joined = (await users.sync("b", since=since, filter=limit))["rooms"]["join"][room_id]
    assert [e for e in users.short(joined["timeline"]["events"]) if e in MESSAGES] == seen
    assert joined["timeline"]["limited"] is True  # newly joined
    initial = (await users.sync("b", filter=limit))["rooms"]["join"][room_id]
    assert [e for e in users.short(initial["timeline"]["events"]) if e in MESSAGES] == seen
    assert initial["timeline"]["limited"] is False  # what it may not see does not make it limited


@pytest.mark.parametrize(
    ("visibility", "after_leave"),
    [("joined", False), ("invited", False), ("shared", True), ("world_readable", True)],
)
async def test_a_user_who_left_reads_forward(users: Users, visibility: str, after_leave: bool) -> None:
    room_id, _ = await _history_room(users, visibility)
    await users.req("POST", f"/rooms/{room_id}/leave", "b", {})
    await users.send("a", room_id, "after leave")
    path = f"/rooms/{room_id}/messages"
    forth = (await users.req("GET", path, "b", dir="f", limit="50")).body
    assert ("after leave" in users.short(forth["chunk"])) is after_leave
    back = (await users.req("GET", path, "b", dir="b", limit="50")).body
    assert users.short(back["chunk"])[0] == "member[b]=leave"  # back from his leave
    left = await users.sync("b", filter={"room": {"include_leave": True, "timeline": {"limit": 50}}})
    timeline = users.short(left["rooms"]["leave"][room_id]["timeline"]["events"])
    assert timeline[-1] == "member[b]=leave"
    assert "after join" in timeline
    members_answer = await users.req("GET", f"/rooms/{room_id}/joined_members", "b")
    assert (members_answer.status, members_answer.errcode) == (403, "M_FORBIDDEN")


async def test_peeking_a_world_readable_room(users: Users) -> None:
    room_id, _ = await _history_room(users, "world_readable")
    path = f"/rooms/{room_id}/messages"
    peek = (await users.req("GET", path, "c", dir="b", limit="50")).body
    # c never joined: only what was sent while the room was world-readable, the change included
    assert [e for e in users.short(peek["chunk"]) if e in MESSAGES or e.startswith("m.room.h")] == [
        "after join",
        "while invited",
        "before invite",
        "m.room.history_visibility",
    ]
    shared_room, _ = await _history_room(users, "joined")
    refused = await users.req("GET", f"/rooms/{shared_room}/messages", "c", dir="b")
    assert (refused.status, refused.errcode) == (403, "M_FORBIDDEN")


# -- presence


def presence(body: dict[str, Any]) -> dict[str, str]:
    return {e["sender"]: e["content"]["presence"] for e in body.get("presence", {}).get("events", [])}


async def test_room_mates_presence(users: Users) -> None:
    since = (await users.sync("a"))["next_batch"]
    room_id = await users.room("a")
    since = (await users.sync("a", since=since))["next_batch"]
    await users.join("b", room_id)  # b never synced: offline, and shown as he comes
    came = await users.sync("a", since=since)
    assert presence(came) == {users.ids["b"]: "offline"}
    assert came["presence"]["events"][0]["content"] == {"presence": "offline"}
    initial = await users.sync("b")
    assert presence(initial) == {users.ids["a"]: "online", users.ids["b"]: "online"}
    online = await users.sync("a", since=came["next_batch"])
    assert presence(online) == {users.ids["b"]: "online"}
    content = online["presence"]["events"][0]["content"]
    assert set(content) == {"presence", "last_active_ago", "currently_active"}
    quiet = await users.sync("a", since=online["next_batch"])
    assert "presence" not in quiet  # b's second sync changed nothing
    await users.sync("b", since=initial["next_batch"], set_presence="offline")
    assert "presence" not in await users.sync("a", since=online["next_batch"])  # offline changes nothing
    await users.sync("d")  # online, but shares no room with a
    assert users.ids["d"] not in presence(await users.sync("a"))
    none = await users.sync("a", filter={"presence": {"types": []}})
    assert "presence" not in none


async def test_a_presence_change_wakes_a_room_mates_long_poll(users: Users, matrix_mock: MatrixMock) -> None:
    room_id = await users.room("a")
    await users.join("b", room_id)
    since_b = (await users.sync("b"))["next_batch"]
    since_a = (await users.sync("a"))["next_batch"]
    waiting = asyncio.create_task(users.sync("a", since=since_a, timeout="5000"))
    await until_waiting(matrix_mock)
    await users.sync("b", since=since_b, set_presence="unavailable")
    woken = await bounded(waiting)
    assert presence(woken) == {users.ids["b"]: "unavailable"}
    assert set(woken["presence"]["events"][0]["content"]) == {"presence", "last_active_ago"}
