"""Receipts and read markers over HTTP against the mock, with the statuses, errcodes, texts and error
precedence Synapse 1.163 answers (the issue 13 probes of real Synapse 1.163.2; probe numbers in the
comments), and what each one leaves in the store for a later /sync."""

from __future__ import annotations

import aiohttp
import pytest

from mockgen.pytest_plugin import MatrixMock
from mockgen.store.matrix.ephemeral import RECEIPT_TYPES
from mockgen.store.matrix.model import ReceiptKey
from tests.room_support import NO_EVENT, V12_UNKNOWN, Room, answered, three_member_room
from tests.support import call

pytestmark = pytest.mark.mock_lenient  # many requests here are bad on purpose


@pytest.fixture
async def room(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Room:
    return await three_member_room(http, matrix_mock)


# -- receipts


def _receipt(r: Room, event_id: str, kind: str = "m.read", room_id: str | None = None) -> str:
    return f"/rooms/{room_id or r.room_id}/receipt/{kind}/{event_id}"


async def test_receipts_are_stored_per_user_type_and_thread(room: Room) -> None:
    r, bob = room, "@b:matrix.test"
    answered(await r.req("POST", _receipt(r, r.e2), r.bob, {}), 200)
    receipts = r.store.receipts(r.room_id)
    assert receipts[ReceiptKey("m.read", bob, None)].event_id == r.e2
    answered(await r.req("POST", _receipt(r, r.e1), r.bob, {}), 200)  # an older event changes nothing [7.9]
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, None)].event_id == r.e2
    # matrix-nio: ?access_token= and {"thread_id": "main"}
    answer = await call(
        r.http,
        "POST",
        f"{r.base}{_receipt(r, r.e2)}",
        params={"access_token": r.bob},
        json_body={"thread_id": "main"},
    )
    answered(answer, 200)
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, "main")].event_id == r.e2
    answered(await r.req("POST", _receipt(r, r.e2, "m.read.private"), r.bob, {"foo": 1}), 200)  # 7.17
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read.private", bob, None)].event_id == r.e2
    # m.fully_read through the receipt endpoint is the read marker [7.6]
    answered(await r.req("POST", _receipt(r, r.e1, "m.fully_read"), r.bob, {}), 200)
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
    answered(await r.req("POST", _receipt(r, reply), r.bob, {"thread_id": root}), 200)
    answered(await r.req("POST", _receipt(r, root), r.bob, {"thread_id": root}), 200)
    answered(
        await r.req("POST", _receipt(r, reply), r.bob, {"thread_id": "main"}),
        400,
        "M_INVALID_PARAM",
        f"event_id {reply} is not related to thread main",
    )
    answered(
        await r.req("POST", _receipt(r, r.e2), r.bob, {"thread_id": r.e1}),
        400,
        "M_INVALID_PARAM",
        f"event_id {r.e2} is not related to thread {r.e1}",
    )  # 7.32
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, root)].event_id == reply


async def test_receipts_that_store_nothing(room: Room) -> None:
    r = room
    before = r.store.ephemeral_stream
    answered(await r.req("POST", _receipt(r, NO_EVENT), r.bob, {}), 200)  # 7.20
    answered(await r.req("POST", _receipt(r, r.e1, room_id=V12_UNKNOWN), r.bob, {}), 200)  # 7.27
    answered(await r.req("POST", _receipt(r, r.e1, room_id="!nope:matrix.test"), r.bob, {}), 200)  # 7.28
    other = (await r.req("POST", "/createRoom", r.alice, {})).body["room_id"]
    answered(
        await r.req("POST", _receipt(r, r.e1, room_id=other), r.alice, {}), 200
    )  # another room's event [7.22]
    assert r.store.ephemeral_stream == before
    assert r.store.receipts(r.room_id) == {}


async def test_receipt_errors_in_synapse_order(room: Room) -> None:
    r = room
    bad_ids = "A valid room ID and event ID must be specified"
    answered(await r.req("POST", _receipt(r, "notanevent"), r.bob, {}), 400, "M_UNKNOWN", bad_ids)  # 7.21
    long_id = "!doesnotexist00000000000000000000000000000000"  # not 43 characters
    answered(await r.req("POST", _receipt(r, r.e1, room_id=long_id), r.bob, {}), 400, "M_UNKNOWN", bad_ids)
    answered(await r.req("POST", _receipt(r, r.e1, room_id="garbage"), r.bob, {}), 400, "M_UNKNOWN", bad_ids)
    answered(
        await r.req("POST", _receipt(r, "bad", "m.foo"), r.bob, {}), 400, "M_UNKNOWN", bad_ids
    )  # ids first [7.43]
    for token, data in ((r.bob, None), (r.carol, None), (r.bob, b"{")):  # 7.19, 7.44, 7.45
        answer = await r.req(
            "POST", _receipt(r, r.e1, "m.foo"), token, {} if data is None else None, data=data
        )
        answered(answer, 400, "M_UNKNOWN")
        # The three names come in an order that changes per Synapse process: compared by rule
        prefix = "Receipt type must be "
        assert answer.body["error"].startswith(prefix)
        assert sorted(answer.body["error"][len(prefix) :].split(", ")) == sorted(RECEIPT_TYPES)
    answered(await r.req("POST", _receipt(r, r.e1), r.bob, data=b""), 400, "M_NOT_JSON")  # 7.16
    answered(await r.req("POST", _receipt(r, r.e1), r.bob, data=b"{"), 400, "M_NOT_JSON")
    answered(await r.req("POST", _receipt(r, r.e1), r.bob, data=b"[]"), 400, "M_BAD_JSON")
    answered(await r.req("POST", _receipt(r, r.e1), r.carol, data=b"{"), 400, "M_NOT_JSON")  # 7.46
    answered(await r.req("POST", _receipt(r, r.e1), r.bob, {"thread_id": ""}), 400, "M_INVALID_PARAM")  # 7.30
    answered(await r.req("POST", _receipt(r, r.e1), r.bob, {"thread_id": 5}), 400, "M_INVALID_PARAM")
    answered(
        await r.req("POST", _receipt(r, r.e2, "m.fully_read"), r.bob, {"thread_id": "main"}),
        400,
        "M_INVALID_PARAM",
        "thread_id is not compatible with m.fully_read receipts.",
    )  # 7.33
    hidden = "You don't have permission to access that event."
    answered(await r.req("POST", _receipt(r, r.e1), r.carol, {}), 403, "M_FORBIDDEN", hidden)  # 7.23
    answered(
        await r.req("POST", _receipt(r, r.e1, "m.read.private"), r.carol, {}), 403, "M_FORBIDDEN", hidden
    )
    answered(await r.req("POST", _receipt(r, r.e1, "m.fully_read"), r.carol, {}), 200)  # 7.25
    answered(
        await r.req("POST", _receipt(r, NO_EVENT, "m.fully_read"), r.bob, {}),
        404,
        "M_UNKNOWN",
        f"Could not find event {NO_EVENT} in room {r.room_id}",
    )
    answered(await r.req("POST", _receipt(r, r.e1), None, {}), 401, "M_MISSING_TOKEN")
    answered(await r.req("POST", _receipt(r, r.e1, "m.foo"), "syt_bad", {}), 401, "M_UNKNOWN_TOKEN")  # 7.42


async def test_receipt_after_a_leave_only_for_earlier_events(room: Room) -> None:
    r = room
    answered(await r.req("POST", f"/rooms/{r.room_id}/leave", r.bob, {}), 200)
    later = (await r.send(r.alice, "later")).body["event_id"]
    answered(await r.req("POST", _receipt(r, r.e1), r.bob, {}), 200)  # 4.23
    answered(await r.req("POST", _receipt(r, later), r.bob, {}), 403, "M_FORBIDDEN")


# -- read markers


async def test_read_markers_store_the_marker_and_the_receipts(room: Room) -> None:
    r, bob = room, "@b:matrix.test"
    path = f"/rooms/{r.room_id}/read_markers"
    answered(await r.req("POST", path, r.bob, {"m.fully_read": r.e2, "m.read": r.e2}), 200)  # 8.1
    assert r.store.room_account_data(bob, r.room_id) == {"m.fully_read": {"event_id": r.e2}}
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read", bob, None)].event_id == r.e2
    assert r.store.room_account_data("@a:matrix.test", r.room_id) == {}  # only the owner's
    answered(await r.req("POST", path, r.bob, {"m.fully_read": r.e1}), 200)  # backwards: ignored [8.5]
    assert r.store.room_account_data(bob, r.room_id) == {"m.fully_read": {"event_id": r.e2}}
    answered(await r.req("POST", path, r.bob, {"m.read.private": r.e2}), 200)  # 8.8
    assert r.store.receipts(r.room_id)[ReceiptKey("m.read.private", bob, None)].event_id == r.e2
    for body in (
        {},
        {"m.something": r.e1},
        {"m.read": None},
        {"m.hidden": True},
        {"m.read": NO_EVENT},
        {"m.read": "abc"},
    ):
        answered(await r.req("POST", path, r.bob, body), 200)  # 8.10-8.18
    answered(await r.req("POST", path, r.carol, {"m.fully_read": r.e1}), 200)  # no membership check [8.22]
    assert r.store.room_account_data("@c:matrix.test", r.room_id) == {"m.fully_read": {"event_id": r.e1}}
    answered(await r.req("POST", f"/rooms/{V12_UNKNOWN}/read_markers", r.bob, {"m.read": r.e1}), 200)  # 8.24
    answered(await r.req("POST", "/rooms/garbage/read_markers", r.bob, {"m.read": r.e1}), 200)  # 8.26
    answer = await call(
        r.http, "POST", f"{r.mock.url}/_matrix/client/r0{path}", token=r.bob, json_body={"m.fully_read": r.e2}
    )
    answered(answer, 200)


async def test_read_marker_errors(room: Room) -> None:
    r = room
    path = f"/rooms/{r.room_id}/read_markers"
    for marker in (NO_EVENT, "abc", 5):  # 8.15, 8.17, 8.19
        answered(
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
    answered(await r.req("POST", path, r.bob, {"m.fully_read": foreign}), 404, "M_UNKNOWN")  # 8.21
    answered(
        await r.req("POST", f"/rooms/{V12_UNKNOWN}/read_markers", r.bob, {"m.fully_read": r.e1}),
        404,
        "M_UNKNOWN",
    )  # 8.25
    answered(
        await r.req("POST", path, r.carol, {"m.read": r.e1}),
        403,
        "M_FORBIDDEN",
        "You don't have permission to access that event.",
    )  # 8.23
    before = r.store.ephemeral_stream
    answered(
        await r.req("POST", path, r.bob, {"m.read": r.e2, "m.fully_read": NO_EVENT}), 404, "M_UNKNOWN"
    )  # 8.33
    assert r.store.ephemeral_stream == before  # the mock stores nothing on an error
    answered(await r.req("POST", path, r.bob, data=b"{"), 400, "M_NOT_JSON")
    answered(await r.req("POST", path, r.bob, data=b""), 400, "M_NOT_JSON")
    answered(await r.req("POST", path, r.bob, data=b"[]"), 400, "M_BAD_JSON")
    answered(await r.req("POST", path, r.carol, data=b"{"), 400, "M_NOT_JSON")  # 8.32
    # Synapse answers m.read as a list with 500 (x-server-answers-500); the contract and the mock say 400
    answered(await r.req("POST", path, r.bob, {"m.read": [r.e1]}), 400, "M_BAD_JSON")
    answered(await r.req("POST", path, None, {"m.read": r.e1}), 401, "M_MISSING_TOKEN")
    answered(await r.req("POST", path, "syt_bad", {"m.fully_read": NO_EVENT}), 401, "M_UNKNOWN_TOKEN")  # 8.31
