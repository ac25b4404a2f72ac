"""The long-poll's faults, as a client meets them behind a reverse proxy: unmodified matrix-nio's
`sync_forever` lives through nginx's 502 and 504 HTML pages and a dropped long-poll and still receives the
next message; a sync that hangs past the client's own timeout is a latency fault; /messages gets the proxy's
pages too. specs/matrix.yaml documents the proxy's answers (`ProxyBadGateway`, `ProxyGatewayTimeout`)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import nio
import pytest

from mockgen.pytest_plugin import MatrixMock
from tests.nio_flow import LONG_POLL_MS, bounded, login

pytestmark = pytest.mark.mock_lenient  # the faults' HTML pages are not what the client asked for


async def test_sync_forever_survives_proxy_errors_and_a_dropped_long_poll(matrix_mock: MatrixMock) -> None:
    alice = matrix_mock.add_user("alice", "alice-pw")
    matrix_mock.add_user("bob", "bob-pw")
    client = await login(matrix_mock.url, alice, "alice-pw")
    try:
        created = await bounded(client.room_create(preset=nio.RoomPreset.public_chat))
        assert isinstance(created, nio.RoomCreateResponse), created
        room_id = created.room_id
        matrix = matrix_mock.world.matrix
        matrix.join(matrix.users[matrix_mock.user_id("bob")], room_id)
        assert isinstance(await bounded(client.sync(timeout=0)), nio.SyncResponse)

        bad_gateway = matrix_mock.inject("sync", status=502)
        gateway_timeout = matrix_mock.inject("sync", status=504)
        dropped = matrix_mock.inject("sync", drop_connection=True)
        errors: list[nio.SyncError] = []
        arrived = asyncio.Event()
        wanted: dict[str, str] = {}

        async def on_error(response: nio.SyncError) -> None:
            errors.append(response)
            if len(errors) == 2:
                # Both proxy pages are behind it; the drop is next, then a long-poll that must bring this.
                wanted["id"] = matrix_mock.send_message(room_id, "bob", "after the outage")

        async def on_message(room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
            if event.event_id == wanted.get("id"):
                arrived.set()

        client.add_response_callback(on_error, nio.SyncError)
        client.add_event_callback(on_message, nio.RoomMessageText)
        forever = asyncio.create_task(client.sync_forever(timeout=LONG_POLL_MS))
        try:
            await bounded(arrived.wait())
        finally:
            forever.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bounded(forever)
    finally:
        await bounded(client.close())
    assert (bad_gateway.fired, gateway_timeout.fired, dropped.fired) == (1, 1, 1)
    assert [error.transport_response.status for error in errors] == [502, 504]
    sent = [e for e in matrix_mock.journal("sync") if e.fault in (bad_gateway.id, gateway_timeout.id)]
    assert [e.status for e in sent] == [502, 504]
    assert [v.message for e in sent for v in e.violations] == []  # the HTML pages are documented


@pytest.mark.parametrize(
    ("operation", "status", "title"),
    [
        ("sync", 502, "502 Bad Gateway"),
        ("sync", 504, "504 Gateway Time-out"),
        ("getRoomEvents", 502, "502 Bad Gateway"),
        ("getRoomEvents", 504, "504 Gateway Time-out"),
    ],
)
async def test_the_proxy_pages_are_html_not_matrix_json(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, operation: str, status: int, title: str
) -> None:
    user = matrix_mock.add_user("carol", "carol-pw")
    token = matrix_mock.world.matrix.login(user=user, password="carol-pw")["access_token"]
    room_id = matrix_mock.world.matrix.create_room(matrix_mock.world.matrix.users[user], {})
    path = "sync" if operation == "sync" else f"rooms/{room_id}/messages"
    matrix_mock.inject(operation, status=status)
    url = f"{matrix_mock.url}/_matrix/client/v3/{path}"
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as answer:
        assert answer.status == status
        assert answer.content_type == "text/html"
        page = await answer.text()
    assert f"<title>{title}</title>" in page
    assert "<center>nginx</center>" in page
    entry = matrix_mock.journal(operation)[-1]
    assert (entry.status, list(entry.violations)) == (status, [])
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as again:
        assert again.status == 200  # the fault fired once


async def test_a_proxy_page_of_your_own_must_be_a_string(matrix_mock: MatrixMock) -> None:
    fault = matrix_mock.inject("sync", status=502, body="<html>upstream went away</html>")
    assert fault.body == "<html>upstream went away</html>"
    with pytest.raises(Exception, match="fault body breaks the contract"):
        matrix_mock.inject("sync", status=504, body={"errcode": "M_UNKNOWN"})


async def test_a_sync_that_hangs_past_the_clients_timeout_then_recovers(
    matrix_mock: MatrixMock,
) -> None:
    user = matrix_mock.add_user("dave", "dave-pw")
    token = matrix_mock.world.matrix.login(user=user, password="dave-pw")["access_token"]
    hang = matrix_mock.inject("sync", latency_ms=3_000)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{matrix_mock.url}/_matrix/client/v3/sync"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as impatient:
        with pytest.raises(TimeoutError):
            async with impatient.get(url, headers=headers):
                pass
        assert hang.fired == 1
        async with impatient.get(url, headers=headers) as answer:  # the fault is spent: answered at once
            assert answer.status == 200
            assert "next_batch" in await answer.json()
