"""The relay when more people spoke between two syncs than a sync's timeline holds: the gap is read from the
room's history (from the timeline's prev_batch back to the last sync's token), so no message is lost."""

from __future__ import annotations

import pytest

from contracts.harness.fuzz import FuzzContext
from contracts.harness.fuzz.people import say
from letta_matrix_reference.bridge import relay, relay_events
from letta_matrix_reference.bridge.target import relay_against
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.test_bridge_relay import PERSON, answers, provisioned


async def test_a_gap_longer_than_the_timeline_is_read_from_history(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small window and small pages: eight messages make a limited sync and a gap of three pages.
    monkeypatch.setattr(relay, "TIMELINE_LIMIT", 3)
    monkeypatch.setattr(relay_events, "GAP_PAGE_SIZE", 2)
    letta_mock.add_agent("Ada")
    room = (await provisioned(fuzz_context, matrix_mock, ["Ada"]))["Ada"]
    person = matrix_mock.user_id(PERSON)
    say(matrix_mock.world, room, person, "before")
    assert await relay_against(fuzz_context) == 1  # the relay has a sync token now
    for n in range(8):
        say(matrix_mock.world, room, person, f"m{n}")
    assert await relay_against(fuzz_context) == 8
    bodies = [event["content"]["body"] for event in answers(matrix_mock, room)]
    assert bodies == ["echo: before", *(f"echo: m{n}" for n in range(8))]
    # Without the history, m0 to m4 would be lost (the window holds m5 to m7).
    pages = matrix_mock.journal("getRoomEvents")
    assert pages
    assert [(entry.status, entry.violations) for entry in pages] == [(200, ())] * len(pages)


async def test_a_sync_that_is_not_limited_reads_no_history(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agent("Ada")
    room = (await provisioned(fuzz_context, matrix_mock, ["Ada"]))["Ada"]
    say(matrix_mock.world, room, matrix_mock.user_id(PERSON), "before")
    await relay_against(fuzz_context)
    say(matrix_mock.world, room, matrix_mock.user_id(PERSON), "after")
    assert await relay_against(fuzz_context) == 1
    assert matrix_mock.journal("getRoomEvents") == []
