"""One flow of unmodified matrix-nio, the client the archetype bridge uses, run against the mock
(tests/test_nio_client.py) and against a real Synapse (tests_live): login, an initial `sync`, a message
another user sends received through `sync_forever`'s callback, history paged back with `room_messages`,
typing, read markers, leave and logout. Every call must come back as nio's success type; every await is
bounded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import nio

STEP = 5.0  # seconds any one await may take
LONG_POLL_MS = 1_000  # sync_forever's long-poll: the message has to wake it well before this

T = TypeVar("T")
# (the other user's client, room id, body) -> the event id of the message the other user sent
Send = Callable[[nio.AsyncClient, str, str], Awaitable[str]]


@dataclass
class NioFlowResult:
    room_id: str
    received: list[str] = field(default_factory=list)  # event ids the callback saw, in order
    history: list[str] = field(default_factory=list)  # bodies room_messages paged back over, newest first


def _ok(response: object, kind: type[T]) -> T:
    assert isinstance(response, kind), f"expected {kind.__name__}, got {response!r}"
    return response


async def bounded(awaitable: Awaitable[T], within: float = STEP) -> T:
    async with asyncio.timeout(within):
        return await awaitable


async def login(url: str, user_id: str, password: str) -> nio.AsyncClient:
    client = nio.AsyncClient(url, user_id)
    try:
        _ok(await bounded(client.login(password, device_name="nio flow")), nio.LoginResponse)
    except BaseException:
        await bounded(client.close())
        raise
    return client


async def run_nio_flow(
    url: str,
    user: tuple[str, str],
    other: tuple[str, str],
    send: Send,
) -> NioFlowResult:
    """`user` and `other` are (user id, password); `send(other_client, room_id, body)` makes the other user
    send a message and returns its event id."""
    alice = await login(url, *user)
    try:
        bob = await login(url, *other)
        try:
            return await _flow(alice, bob, send)
        finally:
            await bounded(bob.close())
    finally:
        await bounded(alice.close())


async def _flow(alice: nio.AsyncClient, bob: nio.AsyncClient, send: Send) -> NioFlowResult:
    created = _ok(
        await bounded(alice.room_create(name="nio flow", preset=nio.RoomPreset.public_chat)),
        nio.RoomCreateResponse,
    )
    room_id = created.room_id
    result = NioFlowResult(room_id)
    _ok(await bounded(bob.join(room_id)), nio.JoinResponse)
    before = await send(bob, room_id, "before the sync")

    initial = _ok(await bounded(alice.sync(timeout=0, full_state=True)), nio.SyncResponse)
    assert room_id in initial.rooms.join
    assert before in [event.event_id for event in initial.rooms.join[room_id].timeline.events]
    assert alice.next_batch == initial.next_batch

    # The message another user sends arrives through sync_forever's callback, from the initial sync's token.
    arrived = asyncio.Event()
    wanted: dict[str, str] = {}

    async def on_message(room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        if room.room_id != room_id:
            return
        result.received.append(event.event_id)
        if event.event_id == wanted.get("id"):
            arrived.set()

    alice.add_event_callback(on_message, nio.RoomMessageText)
    forever = asyncio.create_task(alice.sync_forever(timeout=LONG_POLL_MS))
    try:
        wanted["id"] = await send(bob, room_id, "hello from bob")
        await bounded(arrived.wait())
    finally:
        forever.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bounded(forever)
    assert before not in result.received, "the initial sync's message came again"
    assert result.received == [wanted["id"]]

    # History, paged back two events at a time from the newest, until the room's creation.
    start: str | None = alice.next_batch
    for _ in range(20):
        page = _ok(
            await bounded(
                alice.room_messages(room_id, start=start, direction=nio.MessageDirection.back, limit=2)
            ),
            nio.RoomMessagesResponse,
        )
        result.history += [event.body for event in page.chunk if isinstance(event, nio.RoomMessageText)]
        if not page.chunk or page.end is None:
            break
        start = page.end
    assert result.history[:2] == ["hello from bob", "before the sync"]

    _ok(await bounded(alice.room_typing(room_id, typing_state=True, timeout=5_000)), nio.RoomTypingResponse)
    _ok(await bounded(alice.room_typing(room_id, typing_state=False)), nio.RoomTypingResponse)
    _ok(
        await bounded(
            alice.room_read_markers(room_id, fully_read_event=wanted["id"], read_event=wanted["id"])
        ),
        nio.RoomReadMarkersResponse,
    )
    _ok(await bounded(alice.room_leave(room_id)), nio.RoomLeaveResponse)
    _ok(await bounded(alice.logout()), nio.LogoutResponse)
    _ok(await bounded(bob.logout()), nio.LogoutResponse)
    return result


async def send_with_nio(client: nio.AsyncClient, room_id: str, body: str) -> str:
    sent = _ok(
        await bounded(client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})),
        nio.RoomSendResponse,
    )
    return str(sent.event_id)
