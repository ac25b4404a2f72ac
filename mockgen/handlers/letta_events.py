"""A turn as Letta streams it (server-sent events), and a failed turn as each version answers it: the
statuses, bodies and event sequences of the reference observations, LLM failure by LLM failure."""

from __future__ import annotations

from typing import Any

from contracts.validation.sse import DONE, ERROR_EVENT, encode_event
from mockgen.http.dialects import LettaDialect, Reply
from mockgen.store.letta import LettaStore
from mockgen.store.letta_turns import Turn, Version

# What the project's fake LLM (live/fakellm.py) says when it fails, as Letta quotes it.
_UPSTREAM = {
    status: f"Error code: {status} - {{'error': {{'message': 'fake upstream failure', 'type': '{kind}', 'param': None, 'code': None}}}}"  # noqa: E501 (a server's text, verbatim)
    for status, kind in (
        ("500", "server_error"),
        ("429", "rate_limit_error"),
        ("400", "invalid_request_error"),
    )
}
NOT_JSON = "Expecting value: line 1 column 1 (char 0)"
NO_TOOL_CALL = "No tool calls found in response, model must make a tool call"
EMPTY_CHOICES = "Unpacking inner thoughts from empty response not supported"
CONNECTION = "Failed to connect to OpenAI: Connection error."
# Letta 0.11.7's stream error text and stop reason per failure (without / with stream_tokens).
_STREAM_117: dict[str, tuple[str, str]] = {
    "500": ("error", f"INTERNAL_SERVER_ERROR: OpenAI API error: {_UPSTREAM['500']}"),
    "429": ("error", f"RATE_LIMIT_EXCEEDED: Rate limited by OpenAI: {_UPSTREAM['429']}"),
    "400": ("error", f"INVALID_ARGUMENT: Bad request to OpenAI: {_UPSTREAM['400']}"),
    "unreachable": ("error", f"INTERNAL_SERVER_ERROR: {CONNECTION}"),
    "malformed": ("error", f"Unhandled LLM error: {NOT_JSON}"),
    "no_choices": ("invalid_llm_response", EMPTY_CHOICES),
    "no_tool_call": ("no_tool_call", NO_TOOL_CALL),
}
_STREAM_117_TOKENS: dict[str, tuple[str, str]] = {
    "no_choices": ("no_tool_call", "No tool call ID available"),
    "no_tool_call": ("no_tool_call", "No tool call ID available"),
    "malformed": (
        "error",
        "An exception occurred mid-stream with status code 500 with content "
        'b\'data: {"message_type":"stop_reason","stop_reason":"error"}\\n\\n\'',
    ),
}
LLM_ERROR = "An error occurred with the LLM request."
# Letta 0.16.8's LLM failure: (status, error type, message, detail) for the JSON answer.
_LLM_16: dict[str, tuple[int, str, str, str]] = {
    "500": (500, "llm_error", LLM_ERROR, f"INTERNAL_SERVER_ERROR: OpenAI API error: {_UPSTREAM['500']}"),
    "429": (
        429,
        "llm_rate_limit",
        "Rate limit exceeded for LLM model provider. Please wait before making another request.",
        f"RATE_LIMIT_EXCEEDED: Rate limited by OpenAI: {_UPSTREAM['429']}",
    ),
    "400": (
        400,
        "llm_bad_request",
        "The request to the LLM model provider was invalid.",
        f"INVALID_ARGUMENT: Bad request to OpenAI-compatible endpoint: {_UPSTREAM['400']}",
    ),
    "unreachable": (500, "llm_error", LLM_ERROR, f"INTERNAL_SERVER_ERROR: {CONNECTION}"),
    "malformed": (
        500,
        "llm_error",
        LLM_ERROR,
        f"INTERNAL_SERVER_ERROR: OpenAI API returned invalid JSON response (likely an HTML error page): {NOT_JSON}",  # noqa: E501 (a server's text, verbatim)
    ),
}


def failure_reply(version: Version, failure: str) -> Reply:
    """sendAgentMessage's answer to a turn the LLM failed."""
    if version == "0.11.7":
        if failure == "no_choices":
            return LettaDialect.detail(400, EMPTY_CHOICES)
        if failure == "no_tool_call":
            return LettaDialect.detail(400, NO_TOOL_CALL)
        return LettaDialect.detail(500, "An internal server error occurred")
    if failure == "no_choices":
        return LettaDialect.detail(500, "An unknown error occurred")
    status, kind, message, detail = _LLM_16[failure]
    return Reply(status, {"error": {"type": kind, "message": message, "detail": detail}})


def _stop(reason: str) -> bytes:
    return encode_event({"message_type": "stop_reason", "stop_reason": reason})


def _ping(store: LettaStore, run_id: str | None) -> bytes:
    return encode_event(
        {
            "id": store.new_id("ping"),
            "date": store.message_date(),
            "name": None,
            "message_type": "ping",
            "otid": None,
            "sender_id": None,
            "step_id": None,
            "is_err": None,
            "seq_id": None,
            "run_id": run_id,
        }
    )


def _error_16(run_id: str | None, kind: str, message: str, detail: str) -> bytes:
    return encode_event(
        {
            "message_type": "error_message",
            "run_id": run_id,
            "error_type": kind,
            "message": message,
            "detail": detail,
            "seq_id": None,
        },
        ERROR_EVENT,
    )


def failure_events(
    store: LettaStore, failure: str, tokens: bool, *, run_id: str | None = None
) -> tuple[int, list[bytes]]:
    """streamAgentMessage's status and events for a failed turn (`empty_input`: 0.16.8's `messages: []`)."""
    if store.version == "0.11.7":
        table = {**_STREAM_117, **(_STREAM_117_TOKENS if tokens else {})}
        reason, text = table[failure]
        # The status comes from the first chunk: only a failure after it (mid-stream) is a 200.
        status = 200 if tokens and failure == "malformed" else 500
        error = encode_event({"error": text, "code": "INTERNAL_SERVER_ERROR"}, ERROR_EVENT)
        return status, [_stop(reason), error]
    run_id = run_id or store.new_id("run")
    done = encode_event(DONE)
    if failure in ("empty_input", "no_choices"):
        unknown = "An unknown error occurred with the LLM streaming request."
        return 200, [
            _ping(store, run_id),
            _stop("error"),
            _error_16(run_id, "internal_error", unknown, "list index out of range"),
            done,
        ]
    if failure == "malformed" and tokens:
        detail = f"Unhandled LLM error: {NOT_JSON}"
        error = _error_16(run_id, "internal_error", "An error occurred during agent execution.", detail)
        return 200, [_ping(store, run_id), _stop("error"), _stop("llm_api_error"), error]
    _, kind, message, detail = _LLM_16[failure]
    # The stream words a 400 as a general LLM error.
    kind, message = ("llm_error", LLM_ERROR) if failure == "400" else (kind, message)
    return 200, [_ping(store, run_id), _stop("llm_api_error"), _error_16(run_id, kind, message, detail), done]


def turn_events(store: LettaStore, turn: Turn, tokens: bool, *, error: bool = False) -> list[bytes]:
    """A played turn as events: (0.16.8: a ping,) its messages, whole or in fragments, the stop reason,
    the usage and `[DONE]`; with `error`, an LLM failure after the messages instead."""
    events = [_ping(store, turn.run_id)] if store.version == "0.16.8" else []
    for message in turn.messages:
        pieces = _fragments(store.version, message) if tokens else [message]
        events.extend(encode_event(piece) for piece in pieces)
    if error:
        if store.version == "0.11.7":
            reason, text = _STREAM_117["500"]
            return [
                *events,
                _stop(reason),
                encode_event({"error": text, "code": "INTERNAL_SERVER_ERROR"}, ERROR_EVENT),
            ]
        _, kind, message_text, detail = _LLM_16["500"]
        return [
            *events,
            _stop("llm_api_error"),
            _error_16(turn.run_id, kind, message_text, detail),
            encode_event(DONE),
        ]
    usage = dict(turn.usage)
    if tokens and store.version == "0.16.8":
        usage.update(cached_input_tokens=None, cache_write_tokens=None, reasoning_tokens=None)
    return [*events, _stop(turn.stop_reason), encode_event(usage), encode_event(DONE)]


def _split(text: str, version: Version, size: int = 12) -> list[str]:
    """Token fragments: 0.11.7 cut its text in pieces of about a dozen characters (a reasoning's with a
    leading space; "echo: hell", "o tokens"), 0.16.8 word by word (each word keeps its trailing space)."""
    if version == "0.16.8":
        words = text.split(" ")
        return [w + " " for w in words[:-1]] + ([words[-1]] if words[-1] else []) or [text]
    return [text[i : i + size] for i in range(0, len(text), size)] or [text]


def _fragments(version: Version, message: dict[str, Any]) -> list[dict[str, Any]]:
    kind = message["message_type"]
    chunk = {**message, "step_id": None} if version == "0.11.7" else dict(message)
    if kind == "reasoning_message":
        return [{**chunk, "reasoning": piece} for piece in _split(" " + message["reasoning"], version)]
    if kind == "assistant_message" and isinstance(message["content"], str):
        return [{**chunk, "content": piece} for piece in _split(message["content"], version, 10)]
    if kind == "tool_call_message":
        call = message["tool_call"]
        head = {"name": call["name"], "tool_call_id": call["tool_call_id"]}
        pieces = [head] + [
            {"arguments": piece, **({"tool_call_id": call["tool_call_id"]} if version == "0.16.8" else {})}
            for piece in _split(call["arguments"] or "", "0.11.7")
        ]
        if version == "0.16.8":
            return [{**chunk, "tool_call": piece, "tool_calls": piece} for piece in pieces]
        return [{**chunk, "tool_call": piece} for piece in pieces]
    return [message]
