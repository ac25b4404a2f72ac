"""A corpus step's `compare` selectors: what they pick out of an answer, masked so two runs (the mock's users,
rooms and tokens, and the real server's) compare by rule, and the differential reporting a step whose picked
content differs."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.harness.corpus import CorpusError, parse_corpus
from contracts.harness.differential import compare
from contracts.harness.projection import ABSENT, mask, project, select
from contracts.harness.scenario import Outcome, Step

ROOM = "!r-YeROYTqO-J1i3i9AAUd1m9GuDN9ep4SBJ1M2-ljxI"
EVENT = "$Vj5WyXQuAb1nE4-C0kmI6Le3vAg9xLhbdYJGnO4pQzc"
SYNC = {
    "next_batch": "s72_4_2_0_0_0_0_0_0_0_0_0_0_0",
    "rooms": {
        "join": {
            ROOM: {
                "state": {
                    "events": [
                        {"type": "m.room.member", "state_key": "@cc0123456789b:matrix.test"},
                        {"type": "m.room.name", "state_key": ""},
                        {"type": "m.room.member", "state_key": "@cc0123456789a:matrix.test"},
                    ]
                },
                "summary": {"m.heroes": ["@cc0123456789b:matrix.test"], "m.joined_member_count": 2},
                "timeline": {"events": [{"event_id": EVENT, "content": {"body": "hi"}}, {"content": {}}]},
            }
        }
    },
}


def test_masks_the_parts_two_runs_differ_in() -> None:
    assert mask({EVENT: [ROOM, "@cc0123456789a:matrix.test", "s1_0", "t3-41_0_0", "sent"]}) == {
        "$<event>": ["!<room>", "@<prefix>a:matrix.test", "<token>", "<token>", "sent"]
    }
    assert mask("!AbCdEfGhIjKlMnOpQr:matrix.test") == "!<room>"


@pytest.mark.parametrize(
    ("selector", "picked"),
    [
        (f"/rooms/join/{ROOM}/summary/m.joined_member_count", 2),
        (f"/rooms/join/{ROOM}/summary/m.heroes", ["@<prefix>b:matrix.test"]),
        # every member event's state key, sorted: Synapse lists state in no order
        (
            f"/rooms/join/{ROOM}/state/events/[type=m.room.member]/state_key",
            ["@<prefix>a:matrix.test", "@<prefix>b:matrix.test"],
        ),
        (f"/rooms/join/{ROOM}/timeline/events/*/content/body", ["hi"]),  # the event without one is left out
        (f"/rooms/join/{ROOM}/timeline/events/0/event_id", "$<event>"),
        ("/rooms/join/*/summary/m.joined_member_count", [2]),
        ("/presence", ABSENT),
        (f"/rooms/leave/{ROOM}/timeline/events/*/type", []),
        ("/next_batch", "<token>"),
    ],
)
def test_select(selector: str, picked: Any) -> None:
    assert select(SYNC, selector) == picked


def test_project_fills_the_runs_variables() -> None:
    selector = "/rooms/join/{room}/summary/m.joined_member_count"
    assert project(SYNC, [selector], {"room": ROOM}) == ((selector, 2),)
    assert project(SYNC, [selector], {}) == ((selector, ABSENT),)  # an unknown variable reaches nothing


def _outcome(step: Step, body: Any, room: str) -> Outcome:
    return Outcome(
        step, 200, None, (), body, None, [], projections=project(body, step.compare, {"room": room})
    )


def test_the_differential_reports_content_the_selectors_pick() -> None:
    step = Step("lazy", "matrix", "GET", "/sync", compare=("/rooms/join/{room}/summary", "/next_batch"))
    other_room = "!AbCdEfGhIjKlMnOpQr:matrix.test"
    real = {"next_batch": "s9_1", "rooms": {"join": {other_room: {"summary": {"m.joined_member_count": 2}}}}}
    same = {"next_batch": "s3_0", "rooms": {"join": {ROOM: {"summary": {"m.joined_member_count": 2}}}}}
    assert compare([_outcome(step, same, ROOM)], [_outcome(step, real, other_room)]) == []
    wrong = {"next_batch": "s3_0", "rooms": {"join": {ROOM: {"summary": {}}}}}
    [found] = compare([_outcome(step, wrong, ROOM)], [_outcome(step, real, other_room)])
    assert (found.aspect, found.mock, found.real) == (
        "content",
        {"/rooms/join/{room}/summary": {}},
        {"/rooms/join/{room}/summary": {"m.joined_member_count": 2}},
    )


def test_the_corpus_takes_compare_selectors() -> None:
    text = "service: matrix\nsteps:\n  - {name: a, method: GET, path: /s, expect: 200, compare: [/x/*/y]}\n"
    assert parse_corpus(text, "c.yaml")[0].compare == ("/x/*/y",)
    with pytest.raises(CorpusError, match="does not match"):
        parse_corpus(text.replace("[/x/*/y]", "[x]"), "c.yaml")
