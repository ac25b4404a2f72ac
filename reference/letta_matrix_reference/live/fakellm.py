"""A loopback OpenAI-compatible LLM, so that real Letta answers chat offline (``make live``).

    python -m letta_matrix_reference.live.fakellm [--port 0]   # {"url": "http://127.0.0.1:PORT/v1"}

    with FakeLLM() as llm:                    # a thread of its own; or `async with FakeLLM()` in a loop
        llm.url                               # "http://127.0.0.1:PORT/v1": an agent's model_endpoint
        llm.requests                          # what it was asked, oldest first (the last 200)

It serves ``POST /v1/chat/completions`` (JSON, or OpenAI-format SSE chunks ending in ``data: [DONE]``
with ``stream: true``), ``POST /v1/embeddings`` and ``GET /v1/models``, on 127.0.0.1 only.

What it answers is decided by the request alone, so any number of agents and tests can share one:

- A turn's first step (the newest user message is the user's text): with the agent's ``send_message`` tool
  offered, a call to it, ``{"thinking": "The user said '<text>'; I will echo it.", "message": "echo:
  <text>"}`` (how a Letta 0.11.7 ``memgpt_v2_agent`` answers, which calls with ``tool_choice:
  "required"``); without it, the plain text ``echo: <text>`` (a 0.16.8 ``letta_v1_agent``).
- A later step (the newest message is a tool result, or Letta's ``heartbeat`` notice): ``send_message``
  again when it is offered and the call is required, else a plain stop.
- ``fakellm:MODE`` in the user's text makes the first step misbehave (later steps stay well-behaved):

  ========================  ==================================================================
  ``fakellm:http-500``      HTTP 500 with an OpenAI error body (also ``http-429``, ``http-400``)
  ``fakellm:malformed``     200 whose body is not JSON (with ``stream``: a ``data:`` line that is not)
  ``fakellm:no-choices``    200 with ``choices: []``
  ``fakellm:no-tool-call``  200 with plain text, no tool call, even where one is required
  ``fakellm:bad-arguments`` a ``send_message`` call whose arguments are cut-off JSON
  ``fakellm:call=TOOL``     a call to ``TOOL`` (offered or not), its first string parameter given
                            the echo (``call=TOOL(a,b)``: parameters ``a`` and ``b``); then
                            ``send_message`` on the next step
  ========================  ==================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from contracts.fakellm import MARKER, echo, letta_notice, thinking

LOOPBACK = "127.0.0.1"
MODEL = "fake-llm"
EMBEDDING_MODEL = "fake-embed"
EMBEDDING_DIM = 1536
CHUNK = 12  # characters of text or arguments per streamed chunk
KEPT_REQUESTS = 200

_HTTP_ERRORS = {
    "http-500": (500, "server_error"),
    "http-429": (429, "rate_limit_error"),
    "http-400": (400, "invalid_request_error"),
}
MODES = ("echo", *_HTTP_ERRORS, "malformed", "no-choices", "no-tool-call", "bad-arguments", "call")


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class Turn:
    """What one chat-completions request asks: the user's text, whether this is a turn's first step, the
    tools offered, whether a call is required, and the misbehaviour the text asks for."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
        own = [text for text in users if letta_notice(text) is None]
        self.text = own[-1] if own else ""
        last = messages[-1] if messages else {}
        self.first_step = last.get("role") == "user" and letta_notice(_text(last.get("content"))) is None
        self.tools: dict[str, Mapping[str, Any]] = {
            str(tool["function"].get("name")): tool["function"]
            for tool in body.get("tools") or []
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict)
        }
        self.required = body.get("tool_choice") == "required"
        self.stream = body.get("stream") is True
        found = MARKER.search(self.text) if self.first_step else None
        self.mode = found.group(1) if found else "echo"
        self.tool = found.group(2) if found and found.group(2) else None
        self.named = tuple(filter(None, found.group(3).split(","))) if found and found.group(3) else ()

    @property
    def echo(self) -> str:
        return echo(self.text)

    def reply(self) -> tuple[str | None, tuple[str, str] | None]:
        """The answer as (text, (tool, arguments JSON)): one of the two is None."""
        if self.mode == "call" and self.tool:
            return None, (self.tool, json.dumps(self._arguments(self.tool)))
        if self.mode == "bad-arguments":
            return None, ("send_message", '{"thinking": "oops", "message": "unterminated')
        if (
            self.mode != "no-tool-call"
            and "send_message" in self.tools
            and (self.first_step or self.required)
        ):
            arguments = {"thinking": thinking(self.text), "message": self.echo}
            return None, ("send_message", json.dumps(arguments))
        return self.echo, None

    def _arguments(self, tool: str) -> dict[str, Any]:
        """`thinking` a sentence; the echo for the parameters the marker names (`call=TOOL(a,b)`), else
        for the tool's first string parameter (`message`, `query`...), `message` for a tool not offered;
        `request_heartbeat` true so the agent takes another step. The rest are left to the tool's defaults
        (Letta marks every parameter of its `strict` tools required, optional ones too)."""
        parameters = self.tools.get(tool, {}).get("parameters", {})
        declared = parameters.get("properties") if isinstance(parameters, dict) else None
        declared = declared if isinstance(declared, dict) else {}
        first = next(
            (
                name
                for name, schema in declared.items()
                if name != "thinking" and schema.get("type") == "string"
            ),
            "message",
        )
        arguments: dict[str, Any] = {"thinking": f"I will call {tool}."}
        arguments.update(dict.fromkeys(self.named or (first,), self.echo))
        if "request_heartbeat" in declared:
            arguments["request_heartbeat"] = True
        return arguments


def _usage(body: Mapping[str, Any], completion: str) -> dict[str, int]:
    """Token counts by a rough rule (four characters a token), the same for the same request."""
    prompt = len(json.dumps(body.get("messages", []))) // 4
    done = max(1, len(completion) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def _completion_id(body: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return f"chatcmpl-{digest[:24]}"


def _tool_call(completion_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": f"call_{completion_id[-20:]}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def completion(body: Mapping[str, Any], turn: Turn) -> dict[str, Any]:
    """The non-streaming answer, `chat.completion`."""
    text, call = turn.reply()
    identifier = _completion_id(body)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if call is not None:
        message["tool_calls"] = [_tool_call(identifier, *call)]
    choices = (
        []
        if turn.mode == "no-choices"
        else [
            {
                "index": 0,
                "message": message,
                "finish_reason": "stop" if call is None else "tool_calls",
                "logprobs": None,
            }
        ]
    )
    return {
        "id": identifier,
        "object": "chat.completion",
        "created": 0,
        "model": str(body.get("model") or MODEL),
        "choices": choices,
        "usage": _usage(body, text or (call[1] if call else "")),
    }


def chunks(body: Mapping[str, Any], turn: Turn) -> Iterator[dict[str, Any]]:
    """The streaming answer, `chat.completion.chunk`s: the role, the fragments, the finish, the usage."""
    text, call = turn.reply()
    identifier = _completion_id(body)
    base = {
        "id": identifier,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": str(body.get("model") or MODEL),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        if turn.mode == "no-choices":
            return {**base, "choices": []}
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    if call is None:
        yield chunk({"role": "assistant", "content": ""})
        for start in range(0, len(text or ""), CHUNK):
            yield chunk({"content": (text or "")[start : start + CHUNK]})
        yield chunk({}, "stop")
    else:
        name, arguments = call
        head = _tool_call(identifier, name, "")
        yield chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, **head}]})
        for start in range(0, len(arguments), CHUNK):
            yield chunk(
                {"tool_calls": [{"index": 0, "function": {"arguments": arguments[start : start + CHUNK]}}]}
            )
        yield chunk({}, "tool_calls")
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(body, text or (call[1] if call else ""))}


def embedding(text: str) -> list[float]:
    """A unit-free vector that depends only on the text."""
    seed = hashlib.sha256(text.encode()).digest()
    return [((seed[i % len(seed)] + i) % 256) / 255.0 - 0.5 for i in range(EMBEDDING_DIM)]


class FakeLLM:
    """The server. `start()`/`stop()` (a thread with its own event loop) or the (async) context managers."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.requests: deque[dict[str, Any]] = deque(maxlen=KEPT_REQUESTS)
        self.base = ""

    @property
    def url(self) -> str:
        """The OpenAI base URL, what an agent's `model_endpoint` takes."""
        return f"{self.base}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "the body is not a JSON object")
        self.requests.append(body)
        turn = Turn(body)
        if turn.mode not in MODES:  # a misspelt marker fails loudly rather than answering as usual
            return _error(400, "invalid_request_error", f"unknown fakellm mode {turn.mode!r}; known: {MODES}")
        if turn.mode in _HTTP_ERRORS:
            status, kind = _HTTP_ERRORS[turn.mode]
            return _error(status, kind, "fake upstream failure")
        if not turn.stream:
            if turn.mode == "malformed":
                return web.Response(text="this is not JSON {", content_type="application/json")
            return web.json_response(completion(body, turn))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        if turn.mode == "malformed":
            await response.write(b"data: this is not JSON {\n\n")
        else:
            for item in chunks(body, turn):
                await response.write(f"data: {json.dumps(item)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body.get("input") if isinstance(body, dict) else None
        texts = [inputs] if isinstance(inputs, str) else [str(item) for item in inputs or []]
        data = [
            {"object": "embedding", "index": i, "embedding": embedding(text)} for i, text in enumerate(texts)
        ]
        usage = {
            "prompt_tokens": sum(len(t) // 4 for t in texts),
            "total_tokens": sum(len(t) // 4 for t in texts),
        }
        return web.json_response({"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage})

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fakellm"}
            for name in (MODEL, EMBEDDING_MODEL)
        ]
        return web.json_response({"object": "list", "data": data})

    # Serving, in the caller's loop or a thread's.

    async def serve(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, self._port)
        await site.start()
        self.base = f"http://{LOOPBACK}:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.serve()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def start(self, timeout: float = 10.0) -> Self:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fakellm", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the fake LLM did not start within {timeout} s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _error(status: int, kind: str, message: str) -> web.Response:
    """An error as OpenAI words it."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status)


async def _run(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeLLM(port) as llm:
        print(json.dumps({"kind": "fakellm", "url": llm.url}), flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m letta_matrix_reference.live.fakellm", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 (the default): a free port")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
