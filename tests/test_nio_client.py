"""Unmodified matrix-nio against the mock, strict: nio's login, sync, sync_forever with a callback,
room_messages, room_typing, room_read_markers, room_leave and logout all succeed, and the mock finds no
contract violation in anything nio sends (the flow is tests/nio_flow.py, shared with tests_live)."""

from __future__ import annotations

import nio

from mockgen.pytest_plugin import MatrixMock
from tests.nio_flow import run_nio_flow


async def test_matrix_nio_runs_the_message_path_against_the_mock(matrix_mock: MatrixMock) -> None:
    alice = matrix_mock.add_user("alice", "alice-pw")
    bob = matrix_mock.add_user("bob", "bob-pw")

    async def send(_bob: nio.AsyncClient, room_id: str, body: str) -> str:
        # a human in the test: the mock sends as bob, no second client's request involved
        return matrix_mock.send_message(room_id, "bob", body)

    result = await run_nio_flow(matrix_mock.url, (alice, "alice-pw"), (bob, "bob-pw"), send)

    bodies = [event["content"].get("body") for event in matrix_mock.timeline(result.room_id)]
    assert "hello from bob" in bodies
    assert result.history[:2] == ["hello from bob", "before the sync"]
    assert matrix_mock.violations() == []
    operations = {entry.operation for entry in matrix_mock.journal()}
    assert {
        "login",
        "sync",
        "getRoomEvents",
        "setTyping",
        "setReadMarker",
        "leaveRoom",
        "logout",
    } <= operations
    assert matrix_mock.calls("sync") >= 2  # the initial sync and sync_forever's long-poll
