"""How the differential compares Letta's chat turns (`contracts.harness.sse`): a stream read as events, a
run of token fragments as one entry, ids and dates by rule, and a disagreement where the types, their order,
the framing or a rule differ — on answers shaped as real Letta 0.11.7's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.harness.differential import compare, letta_messages, letta_said
from contracts.harness.scenario import Outcome, Step
from contracts.harness.sse import (
    DONE,
    FramingError,
    broken_rules,
    parse_events,
    response_summary,
    said,
    summary,
)

ID = "message-51c1f098-b1a5-49ca-99ff-355dfe5c3bfa"
STEP = "step-51af1683-043c-4beb-96be-630c271da212"


def _message(kind: str, index: int, **fields: Any) -> dict[str, Any]:
    otid = ID.removeprefix("message-")[:-2] + f"{0x80 | index:02x}"
    date = "2026-12-04T19:29:53+00:00"
    return {"id": ID, "date": date, "message_type": kind, "otid": otid, "step_id": STEP, **fields}


TURN = [_message("reasoning_message", 0, reasoning="r"), _message("assistant_message", 1, content="echo: hi")]
STOP = {"message_type": "stop_reason", "stop_reason": "end_turn"}
USAGE = {"message_type": "usage_statistics", "step_count": 1}


def _stream(*items: Any, error: dict[str, Any] | None = None) -> str:
    text = "".join(f"data: {item if item == DONE else json.dumps(item)}\n\n" for item in items)
    return text + (f"event: error\ndata: {json.dumps(error)}\n\n" if error else "")


def _outcome(body: Any = None, text: str | None = None, status: int = 200) -> Outcome:
    step = Step(name="turn", service="letta", method="POST", path="/v1/agents/a/messages/stream", expect=200)
    events = parse_events(text) if text is not None else None
    content_type = "text/event-stream; charset=utf-8" if text is not None else "application/json"
    return Outcome(
        step,
        status,
        None,
        (),
        body if text is None else text,
        None,
        [],
        content_type=content_type,
        events=events,
    )


def test_a_stream_is_its_events_in_order_ending_in_done() -> None:
    events = parse_events(_stream(*TURN, STOP, USAGE, DONE))
    expected = ["reasoning_message", "assistant_message", "stop_reason:end_turn", "usage_statistics", DONE]
    assert summary(events) == expected
    assert summary(events) == [
        *response_summary({"messages": TURN, "stop_reason": STOP, "usage": USAGE}),
        DONE,
    ]


def test_token_fragments_of_one_message_are_one_entry() -> None:
    fragments = [_message("assistant_message", 1, content=part) for part in ("echo: h", "i")]
    events = parse_events(_stream(*fragments, STOP, DONE))
    assert summary(events) == ["assistant_message+", "stop_reason:end_turn", DONE]


def test_an_error_event_is_its_code() -> None:
    error = {"error": "INTERNAL_SERVER_ERROR: OpenAI API error", "code": "INTERNAL_SERVER_ERROR"}
    events = parse_events(_stream({"message_type": "stop_reason", "stop_reason": "error"}, error=error))
    assert summary(events) == ["stop_reason:error", "event error:INTERNAL_SERVER_ERROR"]


@pytest.mark.parametrize("text", ["id: 1\ndata: {}\n\n", "event: error\n\n", "retry: 5\ndata: x\n\n"])
def test_what_letta_never_frames_so_is_refused(text: str) -> None:
    with pytest.raises(FramingError):
        parse_events(text)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"id": "message-1"}, "id is message-<uuid4>"),
        (
            {"otid": "51c1f098-b1a5-49ca-99ff-355dfe5c3b7f"},
            "otid is the id's uuid with its low 7 bits an index",
        ),
        ({"date": "2026-12-04T19:29:53.123456Z"}, "date is to the second, +00:00"),
        ({"step_id": "step-1"}, "step_id is step-<uuid4> or null"),
    ],
)
def test_each_rule_is_named_when_broken(change: dict[str, Any], rule: str) -> None:
    assert broken_rules(TURN) == []
    assert rule in broken_rules([TURN[0], {**TURN[1], **change}])


def test_the_parts_of_a_message_share_its_step_not_always_its_date() -> None:
    # Real Letta dates each streamed part as it sends it: parts of one message may span a second.
    later = {**TURN[1], "date": "2026-12-04T19:29:54+00:00"}
    assert broken_rules([TURN[0], later]) == []
    other_step = {**TURN[1], "step_id": "step-0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"}
    assert broken_rules([TURN[0], other_step]) == ["the parts of a message share its step"]


def test_the_differential_compares_types_order_framing_and_rules() -> None:
    real = _outcome(text=_stream(*TURN, STOP, USAGE, DONE))
    assert compare([_outcome(text=_stream(*TURN, STOP, USAGE, DONE))], [real]) == []

    no_done = _outcome(text=_stream(*TURN, STOP, USAGE))
    swapped = _outcome(text=_stream(TURN[1], TURN[0], STOP, USAGE, DONE))
    bad_date = _outcome(text=_stream(TURN[0], {**TURN[1], "date": "2026-12-04T19:29:53Z"}, STOP, USAGE, DONE))
    as_json = _outcome(body={"messages": TURN, "stop_reason": STOP, "usage": USAGE})
    found = [compare([ours], [real])[0].aspect for ours in (no_done, swapped, bad_date, as_json)]
    assert found == ["messages", "messages", "rules", "messages"]


def test_a_body_that_is_not_events_is_a_framing_difference() -> None:
    broken = _outcome(text=_stream(*TURN))
    broken.events, broken.framing = None, "a line Letta never sends"
    assert letta_messages(broken) == ["not a stream of data: events"]


def test_what_a_turn_says_is_compared_with_fragments_joined() -> None:
    whole = _outcome(body={"messages": TURN, "stop_reason": STOP, "usage": USAGE})
    fragments = [
        _message("reasoning_message", 0, reasoning=" r", step_id=None),
        _message("assistant_message", 1, content="echo: ", step_id=None),
        _message("assistant_message", 1, content="hi", step_id=None),
    ]
    assert letta_said(whole) == [("reasoning_message", "r"), ("assistant_message", "echo: hi")]
    assert letta_said(_outcome(text=_stream(*fragments, STOP, USAGE, DONE))) == letta_said(whole)
    bye = [TURN[0], {**TURN[1], "content": "echo: bye"}]
    other = _outcome(body={"messages": bye, "stop_reason": STOP, "usage": USAGE})
    (found,) = compare([other], [whole])
    assert (found.aspect, found.mock, found.real) == (
        "said",
        [("reasoning_message", "r"), ("assistant_message", "echo: bye")],
        [("reasoning_message", "r"), ("assistant_message", "echo: hi")],
    )


def test_what_differs_by_design_is_not_said() -> None:
    login = json.dumps({"type": "login", "last_login": "Never", "time": "2026-12-04 07:29:53 PM UTC+0000"})
    history = [
        {**_message("system_message", 0), "content": "a prompt only the real server writes"},
        {**_message("user_message", 0), "content": login},
        {**_message("tool_return_message", 0), "name": "conversation_search", "status": "success"},
    ]
    assert said(history, history=True) == [
        ("user_message", "<login>"),
        ("tool_return_message", "conversation_search", "success"),
    ]
    assert said(history[:1]) == [("system_message", "a prompt only the real server writes")]
    streamed_call = [
        _message("tool_call_message", 0, tool_call={"name": "conversation_search", "tool_call_id": "c"}),
        _message("tool_call_message", 0, tool_call={"arguments": '{"query":" echo'}),
    ]
    assert said(streamed_call) == [("tool_call_message", "conversation_search", None)]
    whole_call = _message("tool_call_message", 0, tool_call={"name": "t", "arguments": '{"a": 1}'})
    assert said([whole_call]) == [("tool_call_message", "t", {"a": 1})]
