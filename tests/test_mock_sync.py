"""/sync and filters over HTTP against the mock: initial and incremental syncs, limited timelines, invites,
leaves, ephemeral data, filters, the long-poll (woken by events, ended by its timeout or a reset; no sleeps)
and every status and errcode Synapse 1.163 answers (the issue 13 probes of real Synapse 1.163.2). Room
history (/messages): test_mock_room_history.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from mockgen.pytest_plugin import MatrixMock
from mockgen.store.errors import MatrixError
from mockgen.store.matrix.tokens import parse_since, token
from tests.support import call
from tests.sync_support import Pair, bodies, make_pair, until_waiting

pytestmark = pytest.mark.mock_lenient  # many requests here are bad on purpose

ALWAYS = {"next_batch", "device_one_time_keys_count", "device_unused_fallback_key_types"}


@pytest.fixture
async def pair(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Pair:
    return await make_pair(http, matrix_mock)


# -- tokens


def test_since_tokens_parse_and_clamp() -> None:
    assert parse_since(token(7), 10) == 7
    assert parse_since("s1026_1003_1001_1001_1001_1001_1001_1005_1000_1001_1001_1001_1001_1001", 10) == 10
    for bad in ("garbage", "s", "", "t1-2_3"):
        with pytest.raises(MatrixError) as raised:
            parse_since(bad, 10)
        assert (raised.value.status, raised.value.errcode) == (400, "M_UNKNOWN")


# -- initial and incremental


async def test_initial_sync_of_a_user_without_rooms(pair: Pair) -> None:
    answer = await pair.sync(pair.alice)
    assert answer.status == 200
    assert set(answer.body) == ALWAYS | {"account_data", "presence"}  # [1.1]
    assert answer.body["account_data"]["events"][0]["type"] == "m.push_rules"
    assert answer.body["presence"]["events"][0]["sender"] == pair.alice_id
    offline = await pair.sync(pair.bob, set_presence="offline")
    assert "presence" not in offline.body  # never online, and this sync does not make him so [1.65]
    still = await pair.sync(pair.alice, set_presence="offline")
    # "offline" only keeps a sync from marking its user online: alice stays (corpus `presence: ...`)
    assert [e["content"]["presence"] for e in still.body["presence"]["events"]] == ["online"]


async def test_initial_sync_fits_then_is_limited(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.send(pair.alice, room_id, "m1")
    first = (await pair.sync(pair.alice)).body
    joined = first["rooms"]["join"][room_id]
    assert set(joined) == {
        "timeline",
        "state",
        "account_data",
        "ephemeral",
        "unread_notifications",
        "summary",
    }
    timeline = joined["timeline"]
    assert timeline["limited"] is False
    assert joined["state"]["events"] == []
    assert timeline["prev_batch"] == first["next_batch"]
    assert timeline["events"][0]["type"] == "m.room.create"
    assert "room_id" in timeline["events"][0]
    assert all("room_id" not in e for e in timeline["events"][1:])
    for n in range(12):
        await pair.send(pair.alice, room_id, f"n{n}")
    joined = (await pair.sync(pair.alice)).body["rooms"]["join"][room_id]
    assert joined["timeline"]["limited"] is True
    assert len(joined["timeline"]["events"]) == 10
    assert {"m.room.create", "m.room.member"} <= {e["type"] for e in joined["state"]["events"]}
    limited = await pair.sync(pair.alice, filter={"room": {"timeline": {"limit": 2}}})
    assert bodies(limited.body["rooms"]["join"][room_id]["timeline"]["events"]) == ["n10", "n11"]  # [1.7]
    empty = await pair.sync(pair.alice, filter={"room": {"timeline": {"limit": 0}}})
    assert empty.body["rooms"]["join"][room_id]["timeline"]["events"] == []  # [1.10]
    assert empty.body["rooms"]["join"][room_id]["timeline"]["limited"] is True


async def test_incremental_sync_gives_new_events_once_per_since(pair: Pair) -> None:
    room_id = await pair.room()
    since = (await pair.sync(pair.alice)).body["next_batch"]
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    await pair.send(pair.bob, room_id, "hello")
    answer = (await pair.sync(pair.alice, since=since)).body
    timeline = answer["rooms"]["join"][room_id]["timeline"]
    assert bodies(timeline["events"]) == ["hello"]
    assert timeline["limited"] is False
    assert timeline["prev_batch"] == since  # the position right before its first event
    again = (await pair.sync(pair.alice, since=since)).body  # since is not consumed [1.13]
    assert bodies(again["rooms"]["join"][room_id]["timeline"]["events"]) == ["hello"]
    nothing = (await pair.sync(pair.alice, since=answer["next_batch"], timeout="0")).body
    assert nothing == {**nothing, "next_batch": answer["next_batch"]}
    assert set(nothing) == ALWAYS
    await pair.req("PUT", f"/rooms/{room_id}/state/m.room.topic", pair.alice, {"topic": "t"})
    topic = (await pair.sync(pair.alice, since=answer["next_batch"])).body["rooms"]["join"][room_id]
    assert topic["timeline"]["events"][0]["type"] == "m.room.topic"
    assert topic["state"]["events"] == []


async def test_gappy_incremental_sync_puts_the_gap_state_in_state(pair: Pair) -> None:
    room_id = await pair.room()
    since = (await pair.sync(pair.alice)).body["next_batch"]
    await pair.req("PUT", f"/rooms/{room_id}/state/m.room.topic", pair.alice, {"topic": "t"})
    for n in range(12):
        await pair.send(pair.alice, room_id, f"n{n}")
    joined = (await pair.sync(pair.alice, since=since)).body["rooms"]["join"][room_id]
    assert joined["timeline"]["limited"] is True  # [1.62]
    assert [e["type"] for e in joined["state"]["events"]] == ["m.room.topic"]


async def test_invite_join_and_leave_sections(pair: Pair) -> None:
    room_id = await pair.room(name="R", topic="T")
    since = (await pair.sync(pair.bob)).body["next_batch"]
    await pair.req("POST", f"/rooms/{room_id}/invite", pair.alice, {"user_id": pair.bob_id})
    invited = (await pair.sync(pair.bob, since=since)).body
    stripped = invited["rooms"]["invite"][room_id]["invite_state"]["events"]  # [1.67]
    assert stripped[-1]["type"] == "m.room.member"
    assert stripped[-1]["content"]["membership"] == "invite"
    assert {"m.room.create", "m.room.name", "m.room.topic", "m.room.join_rules"} <= {
        e["type"] for e in stripped
    }
    assert all(set(e) == {"content", "sender", "state_key", "type"} for e in stripped)
    assert room_id in (await pair.sync(pair.bob)).body["rooms"]["invite"]  # [1.68]
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    joined = (await pair.sync(pair.bob, since=invited["next_batch"])).body
    assert "invite" not in joined["rooms"]
    newly = joined["rooms"]["join"][room_id]
    assert newly["timeline"]["limited"] is True  # [1.76]
    await pair.req("POST", f"/rooms/{room_id}/leave", pair.bob, {})
    left = (await pair.sync(pair.bob, since=joined["next_batch"])).body
    entry = left["rooms"]["leave"][room_id]  # [1.70]
    assert set(entry) == {"timeline", "state", "account_data"}
    assert entry["timeline"]["events"][-1]["content"]["membership"] == "leave"
    after = (await pair.sync(pair.bob, since=left["next_batch"])).body
    assert "rooms" not in after  # [1.71]
    assert "rooms" not in (await pair.sync(pair.bob)).body  # [1.72]
    included = await pair.sync(pair.bob, filter={"room": {"include_leave": True}})
    assert room_id in included.body["rooms"]["leave"]  # [1.73]


async def test_ephemeral_and_room_account_data(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    since = (await pair.sync(pair.alice)).body["next_batch"]
    event_id = await pair.send(pair.bob, room_id, "read me")
    await pair.req("PUT", f"/rooms/{room_id}/typing/{pair.bob_id}", pair.bob, {"typing": True})
    await pair.req("POST", f"/rooms/{room_id}/receipt/m.read/{event_id}", pair.bob, {})
    await pair.req("POST", f"/rooms/{room_id}/read_markers", pair.alice, {"m.fully_read": event_id})
    joined = (await pair.sync(pair.alice, since=since)).body["rooms"]["join"][room_id]
    ephemeral = joined["ephemeral"]["events"]
    assert [e["type"] for e in ephemeral] == ["m.typing", "m.receipt"]  # [1.78]
    assert ephemeral[0]["content"] == {"user_ids": [pair.bob_id]}
    assert pair.bob_id in ephemeral[1]["content"][event_id]["m.read"]
    assert joined["account_data"]["events"] == [{"type": "m.fully_read", "content": {"event_id": event_id}}]


async def test_filters_on_sync_types_and_rooms(pair: Pair) -> None:
    room_a, room_b = await pair.room(), await pair.room()
    await pair.send(pair.alice, room_a, "a")
    only_b = (await pair.sync(pair.alice, filter={"room": {"rooms": [room_b]}})).body
    assert list(only_b["rooms"]["join"]) == [room_b]
    messages = {"room": {"timeline": {"types": ["m.room.message"]}}}
    typed = (await pair.sync(pair.alice, filter=messages)).body["rooms"]["join"][room_a]
    assert [e["type"] for e in typed["timeline"]["events"]] == ["m.room.message"]


# -- the long-poll


async def test_long_poll_wakes_on_another_users_send(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    since = (await pair.sync(pair.alice)).body["next_batch"]
    waiting = asyncio.create_task(pair.sync(pair.alice, since=since, timeout="10000"))
    await until_waiting(pair.mock)
    sent = time.monotonic()
    await pair.send(pair.bob, room_id, "wake up")
    answer = await waiting
    elapsed = time.monotonic() - sent
    assert elapsed < 1.0, elapsed
    assert bodies(answer.body["rooms"]["join"][room_id]["timeline"]["events"]) == ["wake up"]  # [1.21]


async def test_long_poll_wakes_on_typing(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    since = (await pair.sync(pair.alice)).body["next_batch"]
    waiting = asyncio.create_task(pair.sync(pair.alice, since=since, timeout="10000"))
    await until_waiting(pair.mock)
    await pair.req("PUT", f"/rooms/{room_id}/typing/{pair.bob_id}", pair.bob, {"typing": True})
    answer = await asyncio.wait_for(waiting, 2)
    assert answer.body["rooms"]["join"][room_id]["ephemeral"]["events"][0]["type"] == "m.typing"  # [1.22]


async def test_long_poll_times_out_with_the_same_token(pair: Pair) -> None:
    since = (await pair.sync(pair.alice)).body["next_batch"]
    started = time.monotonic()
    answer = await pair.sync(pair.alice, since=since, timeout="50")
    assert time.monotonic() - started >= 0.05
    assert answer.body["next_batch"] == since
    assert set(answer.body) == ALWAYS


async def test_initial_sync_never_waits(pair: Pair) -> None:
    started = time.monotonic()
    assert (await pair.sync(pair.alice, timeout="10000")).status == 200  # [1.20]
    assert time.monotonic() - started < 2


async def test_a_reset_ends_a_waiting_sync(pair: Pair) -> None:
    since = (await pair.sync(pair.alice)).body["next_batch"]
    waiting = asyncio.create_task(pair.sync(pair.alice, since=since, timeout="10000"))
    await until_waiting(pair.mock)
    pair.mock.world.reset()
    answer = await asyncio.wait_for(waiting, 2)
    assert answer.status == 200
    assert answer.body["next_batch"] == since


# -- errors


@pytest.mark.parametrize(
    ("params", "status", "errcode"),
    [
        ({"since": "garbage"}, 400, "M_UNKNOWN"),  # [1.23]
        ({"from": "s1_0"}, 400, "M_UNKNOWN"),  # [1.29]
        ({"since": "s"}, 400, "M_UNKNOWN"),  # [1.24]
        ({"since": ""}, 400, "M_UNKNOWN"),  # [1.25]
        ({"timeout": "abc"}, 400, "M_INVALID_PARAM"),  # [1.33]
        ({"since": "garbage", "timeout": "abc"}, 400, "M_INVALID_PARAM"),  # [1.31]
        ({"set_presence": "bogus"}, 400, "M_INVALID_PARAM"),  # [1.35]
        ({"full_state": "maybe"}, 400, "M_INVALID_PARAM"),  # [1.36]
        ({"filter": "{bad"}, 400, "M_NOT_JSON"),
        ({"since": "garbage", "filter": "{bad"}, 400, "M_NOT_JSON"),  # [1.32]
        ({"filter": "9999"}, 400, "M_INVALID_PARAM"),
        ({"filter": "abc"}, 400, "M_INVALID_PARAM"),
        ({"filter": '{"room":{"timeline":{"limit":"x"}}}'}, 400, "M_UNKNOWN"),
        ({"filter": '{"room":{"not_rooms":["nope"]}}'}, 400, "M_UNKNOWN"),
    ],
)
async def test_sync_errors(pair: Pair, params: dict[str, str], status: int, errcode: str) -> None:
    answer = await pair.sync(pair.alice, **params)
    assert (answer.status, answer.errcode) == (status, errcode), answer


async def test_sync_needs_a_token(pair: Pair) -> None:
    assert (await pair.sync(None)).errcode == "M_MISSING_TOKEN"
    assert (await pair.sync("nope")).errcode == "M_UNKNOWN_TOKEN"


async def test_sync_from_the_future_is_clamped(pair: Pair) -> None:
    answer = await pair.sync(pair.alice, since="s99999_0_0", timeout="0")
    assert answer.status == 200  # [1.26]


# -- filters


async def test_filters_are_stored_per_user(pair: Pair) -> None:
    definition = {"room": {"timeline": {"limit": 2}}}
    path = f"/user/{pair.alice_id}/filter"
    first = await pair.req("POST", path, pair.alice, definition)
    assert first.status == 200
    assert first.body == {"filter_id": "0"}
    assert (await pair.req("POST", path, pair.alice, definition)).body == {"filter_id": "0"}
    assert (await pair.req("POST", path, pair.alice, {"room": {}})).body == {"filter_id": "1"}
    assert (await pair.req("GET", f"{path}/0", pair.alice)).body == definition
    room_id = await pair.room()
    for n in range(3):
        await pair.send(pair.alice, room_id, f"n{n}")
    synced = (await pair.sync(pair.alice, filter="0")).body["rooms"]["join"][room_id]  # [1.9]
    assert bodies(synced["timeline"]["events"]) == ["n1", "n2"]


@pytest.mark.parametrize(
    ("method", "path", "who", "body", "status", "errcode"),
    [
        ("POST", "/user/{bob}/filter", "alice", {}, 403, "M_FORBIDDEN"),
        ("POST", "/user/@x:elsewhere.test/filter", "alice", {}, 403, "M_FORBIDDEN"),
        ("POST", "/user/alice/filter", "alice", {}, 400, "M_INVALID_PARAM"),
        ("POST", "/user/{alice}/filter", "alice", [], 400, "M_BAD_JSON"),
        ("POST", "/user/{alice}/filter", None, {}, 401, "M_MISSING_TOKEN"),
        ("GET", "/user/{alice}/filter/9999", "alice", None, 404, "M_NOT_FOUND"),
        ("GET", "/user/{alice}/filter/abc", "alice", None, 400, "M_UNKNOWN"),
        ("GET", "/user/{bob}/filter/0", "alice", None, 403, "M_FORBIDDEN"),
        ("GET", "/user/alice/filter/0", "alice", None, 400, "M_INVALID_PARAM"),
        ("GET", "/user/@alice/filter/0", "alice", None, 400, "M_INVALID_PARAM"),
        # Synapse parses any id with a sigil and a colon (found by Schemathesis): not the requester's
        ("GET", "/user/@::%0F/filter/0", "alice", None, 403, "M_FORBIDDEN"),
        ("GET", "/user/{alice}/filter/0", None, None, 401, "M_MISSING_TOKEN"),
    ],
)
async def test_filter_errors(
    pair: Pair, method: str, path: str, who: str | None, body: Any, status: int, errcode: str
) -> None:
    tokens = {"alice": pair.alice, "bob": pair.bob}
    url = path.format(alice=pair.alice_id, bob=pair.bob_id)
    answer = await pair.req(method, url, tokens[who] if who else None, body)
    assert (answer.status, answer.errcode) == (status, errcode), answer


async def test_filter_body_that_is_not_json(pair: Pair) -> None:
    answer = await call(
        pair.http, "POST", f"{pair.base}/user/{pair.alice_id}/filter", token=pair.alice, data=b"{bad"
    )
    assert (answer.status, answer.errcode) == (400, "M_NOT_JSON")


async def test_unread_notifications_and_transaction_ids(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    await pair.send(pair.bob, room_id, "hi")
    await pair.send(pair.bob, room_id, "hey alice")
    notice = {"msgtype": "m.notice", "body": "a notice"}
    await pair.req("PUT", f"/rooms/{room_id}/send/m.room.message/n1", pair.bob, notice)
    own = await pair.send(pair.alice, room_id, "mine")
    joined = (await pair.sync(pair.alice)).body["rooms"]["join"][room_id]
    assert joined["unread_notifications"] == {"notification_count": 2, "highlight_count": 1}  # [1.78]
    mine = next(e for e in joined["timeline"]["events"] if e["event_id"] == own)
    assert mine["unsigned"]["transaction_id"] == "mine"  # the sending device only [1.85]
    theirs = (await pair.sync(pair.bob)).body["rooms"]["join"][room_id]["timeline"]["events"]
    assert all("transaction_id" not in e["unsigned"] for e in theirs if e["sender"] == pair.alice_id)
    await pair.req("POST", f"/rooms/{room_id}/receipt/m.read/{own}", pair.alice, {})
    read = (await pair.sync(pair.alice)).body["rooms"]["join"][room_id]
    assert read["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}  # [1.79]


# -- the plugin acts as a human and waits for the client under test


async def test_plugin_sends_as_a_human_and_waits_for_the_client(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    since = (await pair.sync(pair.alice)).body["next_batch"]
    waiting = asyncio.create_task(pair.sync(pair.alice, since=since, timeout="10000"))
    await until_waiting(pair.mock)
    event_id = pair.mock.send_message(room_id, "bob", "from the plugin")
    answer = await waiting
    assert bodies(answer.body["rooms"]["join"][room_id]["timeline"]["events"]) == ["from the plugin"]
    await pair.mock.wait_synced("alice", event_id, within=2)
    assert pair.mock.timeline(room_id)[-1]["event_id"] == event_id
    later = pair.mock.send_message(room_id, "@bob:matrix.test", "not synced yet")
    with pytest.raises(TimeoutError):
        await pair.mock.wait_synced("alice", later, within=0.05)
    pair.mock.set_typing(room_id, "bob")
    synced = (await pair.sync(pair.alice, since=answer.body["next_batch"])).body
    assert synced["rooms"]["join"][room_id]["ephemeral"]["events"][0]["content"]["user_ids"] == [pair.bob_id]


async def test_long_poll_wakes_the_invitee_and_not_others(pair: Pair) -> None:
    room_id = await pair.room()
    since = (await pair.sync(pair.bob)).body["next_batch"]
    waiting = asyncio.create_task(pair.sync(pair.bob, since=since, timeout="10000"))
    await until_waiting(pair.mock)
    await pair.send(pair.alice, room_id, "not for bob")  # bob is in no room: his sync keeps waiting
    assert not waiting.done()
    assert pair.mock.world.wakeups.waiting == 1
    await pair.req("POST", f"/rooms/{room_id}/invite", pair.alice, {"user_id": pair.bob_id})
    answer = await asyncio.wait_for(waiting, 2)
    assert room_id in answer.body["rooms"]["invite"]


async def test_long_poll_wakes_a_kicked_user_with_the_room_left(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    since = (await pair.sync(pair.bob)).body["next_batch"]
    waiting = asyncio.create_task(pair.sync(pair.bob, since=since, timeout="10000"))
    await until_waiting(pair.mock)
    kick = {"membership": "leave"}
    kicked = await pair.req("PUT", f"/rooms/{room_id}/state/m.room.member/{pair.bob_id}", pair.alice, kick)
    assert kicked.status == 200, kicked
    answer = await asyncio.wait_for(waiting, 2)  # bob is no longer joined: woken as whom the event is about
    assert list(answer.body["rooms"]["leave"]) == [room_id]
    waiting = asyncio.create_task(pair.sync(pair.bob, since=answer.body["next_batch"], timeout="10000"))
    await until_waiting(pair.mock)
    await pair.send(pair.alice, room_id, "after bob")  # no news to bob: his sync keeps waiting
    assert not waiting.done()
    await pair.req("POST", f"/rooms/{room_id}/invite", pair.alice, {"user_id": pair.bob_id})
    assert room_id in (await asyncio.wait_for(waiting, 2)).body["rooms"]["invite"]
