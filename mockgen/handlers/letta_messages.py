"""sendAgentMessage and streamAgentMessage: a turn of an agent, answered as Letta 0.11.7 or 0.16.8 answers it
(the observations are in specs/letta.yaml, each operation's description)."""

from __future__ import annotations

import asyncio
from typing import Any

from mockgen.handlers.letta_events import failure_events, failure_reply, turn_events
from mockgen.handlers.letta_wording import request_errors, validation_reply
from mockgen.http.dialects import LettaDialect, Reply
from mockgen.http.dispatch import Call, orders_checks
from mockgen.http.streaming import StreamReply
from mockgen.store.letta import LettaStore
from mockgen.store.letta_turns import Turn, TurnRequest

INTERNAL = "An internal server error occurred"
NO_REDIS = (
    "Background streaming requires Redis to be running. Please ensure Redis is properly configured. "
    "LETTA_REDIS_HOST: None, LETTA_REDIS_PORT: 6379"
)


def _request(body: dict[str, Any]) -> TurnRequest:
    inputs = list(body.get("messages") or [])
    if body.get("messages") is None and isinstance(body.get("input"), str):
        inputs = [{"role": "user", "content": body["input"]}]  # 0.16.8's shorthand (request_errors allows it)
    return TurnRequest(
        inputs=inputs,
        use_assistant_message=bool(body.get("use_assistant_message", True)),
        assistant_message_tool_name=str(body.get("assistant_message_tool_name") or "send_message"),
        assistant_message_tool_kwarg=str(body.get("assistant_message_tool_kwarg") or "message"),
        include_return_message_types=body.get("include_return_message_types"),
        max_steps=int(body.get("max_steps", 50)),
        stream_tokens=bool(body.get("stream_tokens", False)),
    )


def _checked(call: Call, *, stream: bool) -> tuple[LettaStore, dict[str, Any]]:
    """The checks before a turn, in the server's order: the body (and on 0.16.8 the id), `messages: []`,
    the agent, Redis, the roles and contents."""
    store = call.world.letta
    agent_id = str(call.path["agent_id"])
    errors = request_errors(store.version, agent_id, call.body, call.rejected, stream=stream)
    if errors is not None:
        raise _Answer(validation_reply(store.version, errors, call.rejected))
    call.ignore()
    body: dict[str, Any] = call.body
    if body.get("messages") == [] and not stream:
        status = 400 if store.version == "0.11.7" else 422
        raise _Answer(LettaDialect.detail(status, "Messages must not be empty"))
    store.exists(agent_id)
    if stream and body.get("background"):
        prefix = "INTERNAL_SERVER_ERROR: " if store.version == "0.16.8" else ""
        raise _Answer(LettaDialect.detail(503, prefix + NO_REDIS))
    roles = [m.get("role") for m in body.get("messages") or []]
    if "assistant" in roles and store.version == "0.11.7":
        raise _Answer(LettaDialect.detail(500, INTERNAL))
    if any(m.get("content") == "" for m in body.get("messages") or []):
        if stream:
            # Real 0.11.7's stream route answers 500 (probed: an empty `text/event-stream` body); the mock
            # gives the documented JSON 500. (0.16.8 not probed.)
            raise _Answer(LettaDialect.detail(500, INTERNAL))
        raise _Answer(LettaDialect.detail(400, "Message content is empty or invalid"))
    return store, body


class _Answer(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@orders_checks
async def send_agent_message(call: Call) -> Reply:
    try:
        store, body = _checked(call, stream=False)
    except _Answer as answer:
        return answer.reply
    turn = store.run_turn(str(call.path["agent_id"]), _request(body))
    if turn.script.delay_ms:
        await asyncio.sleep(turn.script.delay_ms / 1000)
    if turn.failure is not None:
        return failure_reply(store.version, turn.failure)
    return _json_reply(store, turn)


def _json_reply(store: LettaStore, turn: Turn) -> Reply:
    answer: dict[str, Any] = {
        "messages": turn.messages,
        "stop_reason": {"message_type": "stop_reason", "stop_reason": turn.stop_reason},
        "usage": turn.usage,
    }
    if store.version == "0.16.8":
        answer.update(logprobs=None, turns=None)
    return Reply(200, answer)


@orders_checks
def stream_agent_message(call: Call) -> Reply | StreamReply:
    try:
        store, body = _checked(call, stream=True)
    except _Answer as answer:
        return answer.reply
    tokens = bool(body.get("stream_tokens", False))
    fault = dict(call.fault.stream or {}) if call.fault is not None else {}
    if body.get("messages") == [] and store.version == "0.16.8":
        status, events = failure_events(store, "empty_input", tokens)
        turn = None
    else:
        turn = store.run_turn(str(call.path["agent_id"]), _request(body))
        if turn.failure is not None:
            status, events = failure_events(store, turn.failure, tokens, run_id=turn.run_id)
        else:
            status, events = 200, turn_events(store, turn, tokens, error=bool(fault.get("error")))
    if fault.get("omit_done") and events and events[-1].startswith(b"data: [DONE]"):
        events = events[:-1]
    script = turn.script if turn is not None else None
    cut = fault.get("cut_after", script.cut_after if script else None)
    stall_after = fault.get("stall_after", script.stall_after if script else None)
    return StreamReply(
        status,
        events,
        delay_ms=script.delay_ms if script else 0,
        cut_after=None if cut is None else int(cut),
        stall_after=None if stall_after is None else int(stall_after),
        stall_ms=int(fault.get("stall_ms", script.stall_ms if script else 0)),
        on_purpose=bool(fault.get("omit_done")) or (cut is not None),
        woken=call.world.wakeups.wait,
    )
