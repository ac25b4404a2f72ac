"""The `text/event-stream` check: framing first, then every event against the contract's event schema."""

from __future__ import annotations

import pytest

from contracts.validation import validator_for
from contracts.validation.sse import DONE, encode_event, parse_stream

STOP = {"message_type": "stop_reason", "stop_reason": "end_turn"}
USAGE = {
    "message_type": "usage_statistics",
    "completion_tokens": 1,
    "prompt_tokens": 2,
    "total_tokens": 3,
    "step_count": 1,
}


def _check(body: bytes, status: int = 200) -> list[str]:
    validator = validator_for("letta")
    operation = validator.operations["streamAgentMessage"]
    headers = {"content-type": "text/event-stream; charset=utf-8"}
    problems, _ = validator.check_response(operation, status=status, headers=headers, body=body)
    return [p.message for p in problems]


def test_a_stream_as_letta_frames_it_passes() -> None:
    body = encode_event(STOP) + encode_event(USAGE) + encode_event(DONE)
    assert body.startswith(b'data: {"message_type":"stop_reason"')
    assert _check(body) == []
    error = encode_event({"message_type": "stop_reason", "stop_reason": "error"})
    error += encode_event({"error": "boom", "code": "INTERNAL_SERVER_ERROR"}, "error")
    assert b"event: error\ndata: " in error
    assert _check(error, 500) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (encode_event(STOP), "ends without [DONE] or an error event"),
        (encode_event(STOP) + b"data: [DONE]\n", "without its closing blank line"),
        (encode_event(DONE) + encode_event(STOP), "an event after [DONE]"),
        (b"id: 1\n" + encode_event(DONE), "not an event: or data: field"),
        (b"data: {nope\n\n" + encode_event(DONE), "event data that is not JSON"),
        (b"event: message\n\n" + encode_event(DONE), "an event without data"),
        (b"", "no event at all"),
    ],
)
def test_framing_problems_are_named(body: bytes, problem: str) -> None:
    found = _check(body)
    assert any(problem in message for message in found), found


def test_each_event_is_checked_against_the_union() -> None:
    body = encode_event({"message_type": "assistant_message", "id": "m", "date": "2026-12-04T19:29:53+00:00"})
    body += encode_event({"message_type": "stop_reason", "stop_reason": "sleepy"}) + encode_event(DONE)
    found = _check(body)
    assert any("response event 0 at /data/content" in message for message in found), found
    assert any("response event 1 at /data/stop_reason" in message for message in found), found
    assert not any("response event 2" in message for message in found)


def test_multi_line_data_and_crlf_are_read_as_the_standard_reads_them() -> None:
    events, problems = parse_stream(b'data: {"a":\r\ndata: 1}\r\n\r\ndata: [DONE]\r\n\r\n')
    assert problems == []
    assert [e.data for e in events] == [{"a": 1}, DONE]
