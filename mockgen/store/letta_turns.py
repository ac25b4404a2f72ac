"""An agent's turn, as real Letta 0.11.7 or 0.16.8 runs it against an LLM: pure state, no HTTP.

By default an agent answers with the echo turn the project's fake LLM gives (`echo: <text>`; letta_llm):
on 0.11.7 its `memgpt_v2_agent` calls `send_message`, which Letta shows as `reasoning_message` +
`assistant_message` (one id), on 0.16.8 its `letta_v1_agent` answers `assistant_message` alone. A test
scripts the next turns of an agent instead (`Script`): any messages, a stop reason, an LLM failure, a
delay, a stream cut or stalled.

Ids as Letta makes them: `message-<uuid4>`; within one stored message the items share the id, and each
item's `otid` is the uuid with its low 7 bits replaced by the item's index; `step-<uuid4>` per LLM step;
0.16.8 adds `run-<uuid4>` per turn."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mockgen.store import letta_llm

Version = Literal["0.11.7", "0.16.8"]
VERSIONS: tuple[Version, ...] = ("0.11.7", "0.16.8")
DEFAULT_VERSION: Version = "0.11.7"
LlmFailure = Literal["500", "429", "400", "unreachable", "malformed", "no_choices", "no_tool_call"]
LLM_FAILURES: tuple[str, ...] = (
    "500",
    "429",
    "400",
    "unreachable",
    "malformed",
    "no_choices",
    "no_tool_call",
)
SEND_MESSAGE = "send_message"
SENT = "Sent message successfully."
# On a message of a played step: how the history lists it (None: not at all), when not as answered.
LISTED_AS = "_listed_as"
# On a stored send_message return: the id of its call, on whose page of the history Letta 0.11.7 hides it.
HIDDEN_WITH = "_hidden_with"
# On a message of a played step: kept in the history but not part of the answer.
UNANSWERED = "_unanswered"
# What a script may say an item is (short names for the message types Letta answers with).
ITEM_TYPES = {
    "reasoning": "reasoning_message",
    "assistant": "assistant_message",
    "tool_call": "tool_call_message",
    "tool_return": "tool_return_message",
}
SCRIPT_KEYS = frozenset(
    {"messages", "stop_reason", "llm_error", "delay_ms", "cut_after", "stall_after", "stall_ms"}
)


class ScriptError(ValueError):
    """A script the mock cannot play (the control API answers it 400)."""


@dataclass
class Script:
    """One scripted turn. `messages` are items `{"type": reasoning|assistant|tool_call|tool_return, ...}`
    (`text` for reasoning and assistant; `name`, `arguments` (object or string) for a tool call; `name`,
    `tool_return`, `status` for a tool return); a tool return ends an LLM step. `llm_error` makes the turn
    fail as the LLM failing that way does. `delay_ms` before the answer (a stream: before its first event);
    `cut_after` events, a stream's connection is dropped; `stall_after` events, it waits `stall_ms`."""

    messages: list[dict[str, Any]] | None = None
    stop_reason: str = "end_turn"
    llm_error: str | None = None
    delay_ms: int = 0
    cut_after: int | None = None
    stall_after: int | None = None
    stall_ms: int = 0

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> Script:
        unknown = set(spec) - SCRIPT_KEYS
        if unknown:
            raise ScriptError(f"unknown turn fields: {', '.join(sorted(unknown))}")
        error = spec.get("llm_error")
        if error is not None and str(error) not in LLM_FAILURES:
            raise ScriptError(f"llm_error {error!r} is not one of {', '.join(LLM_FAILURES)}")
        messages = spec.get("messages")
        if messages is not None:
            for n, item in enumerate(messages):
                if not isinstance(item, Mapping) or item.get("type") not in ITEM_TYPES:
                    raise ScriptError(f"messages[{n}].type must be one of {', '.join(ITEM_TYPES)}")
        return cls(
            messages=copy.deepcopy(list(messages)) if messages is not None else None,
            stop_reason=str(spec.get("stop_reason", "end_turn")),
            llm_error=None if error is None else str(error),
            delay_ms=int(spec.get("delay_ms", 0)),
            cut_after=None if spec.get("cut_after") is None else int(spec["cut_after"]),
            stall_after=None if spec.get("stall_after") is None else int(spec["stall_after"]),
            stall_ms=int(spec.get("stall_ms", 0)),
        )


@dataclass
class TurnRequest:
    """What the client asked for (the body's fields that shape the answer)."""

    inputs: list[dict[str, Any]]
    use_assistant_message: bool = True
    assistant_message_tool_name: str = SEND_MESSAGE
    assistant_message_tool_kwarg: str = "message"
    include_return_message_types: list[str] | None = None
    max_steps: int = 50
    stream_tokens: bool = False


@dataclass
class Turn:
    """A played turn: the answer's messages (as the JSON answer lists them), its steps' messages for the
    history, the stop reason and usage; or the LLM failure it ended in."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "end_turn"
    usage: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    failure: str | None = None
    script: Script = field(default_factory=Script)


def input_text(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))


def otid(message_id: str, index: int) -> str:
    """Letta's otid: the id's uuid with its low 7 bits replaced by the item's index in its message."""
    value = uuid.UUID(message_id.split("-", 1)[1]).int
    return str(uuid.UUID(int=(value & ~0x7F) | index))


class TurnPlayer:
    """Plays turns for one store: ids from its random source, dates from its clock."""

    def __init__(self, version: Version, new_uuid: Callable[[], str], date: Callable[[], str]) -> None:
        self.version = version
        self._uuid = new_uuid
        self._date = date

    def _base(
        self, message_id: str, message_type: str, index: int | None, step_id: str | None, run_id: str | None
    ) -> dict[str, Any]:
        return {
            "id": message_id,
            "date": self._date(),
            "name": None,
            "message_type": message_type,
            "otid": None if index is None else otid(message_id, index),
            "sender_id": None,
            "step_id": step_id,
            "is_err": None,
            "seq_id": None,
            "run_id": run_id,
        }

    def play(
        self, request: TurnRequest, script: Script, ask: letta_llm.Ask, history: list[dict[str, Any]]
    ) -> Turn:
        """One turn: the script's, else the fake LLM's answer to `ask` (letta_llm)."""
        turn = Turn(script=script, run_id=f"run-{self._uuid()}" if self.version == "0.16.8" else None)
        failure = script.llm_error
        if failure is None and script.messages is None:
            failure = letta_llm.failure(ask)
        if failure is not None and not self._llm_error_is_a_reply(failure):
            if not self._llm_error_is_silence(failure, request):
                turn.failure = failure
                return turn
            items: list[dict[str, Any]] = []
        elif script.messages is not None:
            items = script.messages
        else:
            items = letta_llm.answer(self.version, ask, history)
        steps = _steps(items)
        played: list[list[dict[str, Any]]] = []
        stop = script.stop_reason
        for n, step in enumerate(steps):
            if n == request.max_steps:
                stop = "max_steps"
                break
            last = n == len(steps) - 1 or n + 1 == request.max_steps
            played.append(self._step(step, request, turn.run_id, heartbeat=not last))
        turn.stop_reason = stop
        echoed = [self._echoed_system(m, turn.run_id) for m in request.inputs if m.get("role") == "system"]
        echoed = echoed if self.version == "0.11.7" else []
        answer = [*echoed, *(_shown(m) for step in played for m in step if not m.get(UNANSWERED))]
        wanted = request.include_return_message_types
        turn.messages = [m for m in answer if wanted is None or m["message_type"] in wanted]
        turn.history = self._history(request, played, echoed, turn.run_id)
        turn.usage = self._usage(played, len(steps[: len(played)]))
        return turn

    def _llm_error_is_silence(self, failure: str, request: TurnRequest) -> bool:
        # 0.16.8 streaming tokens from an LLM without choices ends the turn normally, having said nothing.
        return self.version == "0.16.8" and failure == "no_choices" and request.stream_tokens

    def _llm_error_is_a_reply(self, failure: str) -> bool:
        # 0.16.8's agent takes a text answer as its reply: an LLM without a tool call is no failure there.
        return self.version == "0.16.8" and failure == "no_tool_call"

    def _echoed_system(self, message: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
        echoed = self._base(f"message-{self._uuid()}", "system_message", None, None, run_id)
        echoed["content"] = input_text(message["content"])
        return echoed

    def _step(
        self, items: Sequence[dict[str, Any]], request: TurnRequest, run_id: str | None, *, heartbeat: bool
    ) -> list[dict[str, Any]]:
        """One LLM step's messages. 0.11.7 adds `request_heartbeat` to a tool call's arguments: true when
        another step follows."""
        step_id = f"step-{self._uuid()}"
        llm_id = f"message-{self._uuid()}"
        out: list[dict[str, Any]] = []
        index = 0
        for item in items:
            kind = item["type"]
            if kind == "tool_return":
                out.append(self._tool_return(item, step_id, run_id))
                continue
            if kind == "assistant" and self.version == "0.16.8":
                message = self._base(llm_id, "assistant_message", index, step_id, run_id)
                message["content"] = str(item.get("text", ""))
            elif kind == "assistant":
                # The send_message call Letta 0.11.7 turns into an assistant message (the answer shows the
                # call as it is when use_assistant_message is false).
                call = self._base(llm_id, "tool_call_message", index, step_id, run_id)
                arguments = {
                    request.assistant_message_tool_kwarg: str(item.get("text", "")),
                    "request_heartbeat": False,
                }
                call_id = f"call_{self._uuid().replace('-', '')[:24]}"
                call["tool_call"] = {
                    "name": request.assistant_message_tool_name,
                    "arguments": json.dumps(arguments),
                    "tool_call_id": call_id,
                }
                # Stored as Letta stores it, the history lists it as the assistant message it is.
                listed = self._base(llm_id, "assistant_message", index, step_id, run_id)
                listed["content"] = str(item.get("text", ""))
                call[LISTED_AS] = listed
                returned = self._tool_return(
                    {
                        "name": request.assistant_message_tool_name,
                        "tool_return": SENT,
                        "tool_call_id": call_id,
                    },
                    step_id,
                    run_id,
                )
                # Listed only when its call is not on the same page of the history (store.letta).
                returned[LISTED_AS] = {**returned, HIDDEN_WITH: llm_id}
                if request.use_assistant_message:
                    call = {**listed, LISTED_AS: listed}
                    returned[UNANSWERED] = True
                out += [call, returned]
                index += 1
                continue
            elif kind == "reasoning":
                message = self._base(llm_id, "reasoning_message", index, step_id, run_id)
                message.update(
                    source="non_reasoner_model", reasoning=str(item.get("text", "")), signature=None
                )
            else:
                message = self._base(llm_id, "tool_call_message", index, step_id, run_id)
                arguments = item.get("arguments", {})
                if isinstance(arguments, dict) and self.version == "0.11.7":
                    arguments = {**arguments, "request_heartbeat": heartbeat}
                text = arguments if isinstance(arguments, str) else json.dumps(arguments)
                call = {
                    "name": str(item.get("name", "")),
                    "arguments": text,
                    "tool_call_id": str(
                        item.get("tool_call_id") or f"call_{self._uuid().replace('-', '')[:24]}"
                    ),
                }
                message["tool_call"] = call
                if self.version == "0.16.8":
                    message["tool_calls"] = [dict(call)]
            out.append(message)
            index += 1
        return out

    def _tool_return(self, item: Mapping[str, Any], step_id: str, run_id: str | None) -> dict[str, Any]:
        message = self._base(f"message-{self._uuid()}", "tool_return_message", 0, step_id, run_id)
        message["name"] = str(item.get("name", ""))
        fields = {
            "tool_return": str(item.get("tool_return", "")),
            "status": str(item.get("status", "success")),
            "tool_call_id": str(item.get("tool_call_id", "")),
            "stdout": None,
            "stderr": None,
        }
        message.update(fields)
        if self.version == "0.16.8":
            message["tool_returns"] = [{"type": "tool", **fields}]
        return message

    def _history(
        self,
        request: TurnRequest,
        played: list[list[dict[str, Any]]],
        echoed: list[dict[str, Any]],
        run_id: str | None,
    ) -> list[dict[str, Any]]:
        """What the turn leaves in the agent's history, in Letta's order: the input, then each step's
        messages (0.11.7: a heartbeat user message between steps; 0.16.8: the input carries the run)."""
        first_step = played[0][0]["step_id"] if played and played[0] else None
        inputs: list[dict[str, Any]] = []
        echoed_iter = iter(echoed)
        for message in request.inputs:
            if message.get("role") == "system" and self.version == "0.11.7":
                inputs.append(next(echoed_iter))
                continue
            kind = "system_message" if message.get("role") == "system" else "user_message"
            stored = self._base(f"message-{self._uuid()}", kind, None, None, None)
            if self.version == "0.16.8":
                stored.update(otid=message.get("otid") or self._uuid(), step_id=first_step, run_id=run_id)
            else:
                stored["otid"] = message.get("otid")
            stored["name"] = message.get("name")
            stored["content"] = input_text(message["content"])
            inputs.append(stored)
        steps: list[dict[str, Any]] = []
        for n, step in enumerate(played):
            if n and self.version == "0.11.7":
                heartbeat = self._base(
                    f"message-{self._uuid()}", "user_message", None, played[n - 1][0]["step_id"], None
                )
                heartbeat["content"] = json.dumps(
                    {
                        "type": "heartbeat",
                        "reason": "[This is an automated system message hidden from the user] Continuing: continue tool rule.",  # noqa: E501 (a server's text, verbatim)
                    },
                    indent=2,
                )
                steps.append(heartbeat)
            # A send_message call is listed as its assistant message, its return beside it (hidden).
            steps.extend(m.get(LISTED_AS, m) for m in step if m.get(LISTED_AS, m) is not None)
        return [*inputs, *steps]

    def _usage(self, played: list[list[dict[str, Any]]], steps: int) -> dict[str, Any]:
        completion = sum(len(json.dumps(_shown(m))) // 40 for step in played for m in step)
        prompt = 1000
        usage: dict[str, Any] = {
            "message_type": "usage_statistics",
            "completion_tokens": completion,
            "prompt_tokens": prompt,
            "total_tokens": completion + prompt,
            "step_count": steps,
        }
        if self.version == "0.11.7":
            usage.update(steps_messages=None, run_ids=None)
        else:
            usage.update(
                run_ids=None,
                cached_input_tokens=0,
                cache_write_tokens=0,
                reasoning_tokens=0,
                context_tokens=completion + prompt,
            )
        return usage


def _shown(message: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in message.items() if key not in (LISTED_AS, UNANSWERED)}


def _steps(items: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Script items grouped into LLM steps: a tool return ends a step."""
    steps: list[list[dict[str, Any]]] = [[]]
    for item in items:
        steps[-1].append(item)
        if item["type"] == "tool_return":
            steps.append([])
    if not steps[-1] and len(steps) > 1:
        steps.pop()
    return steps
