"""The mock servers' HTTP/1.1 connections: uvicorn's httptools protocol with the limits a listener facing
slow, sloppy or hostile clients needs, and its own errors in the service's dialect (`refusals`).

uvicorn (with httptools) has no read timeout (its keep-alive timer starts only after a first answer), no
limit on a request head and no cap on connections. Here each connection is in one `Phase` at a time and
every phase in which the server waits for its client has a deadline; a head is counted as it arrives; one
`Connections` caps what both listeners hold open.

uvicorn also writes an answer's status line and headers, then its body, as two socket writes. The mock's
answers are whole when they start, so `HeadHeld` sends both in one write: the head waits for the body's
first bytes, or at most until the loop's next turn (a stream's head is not held back by its first event).

The one module that leans on uvicorn's internals: the `HttpToolsProtocol` methods it overrides or calls.
tests/test_mock_lifecycle.py checks that they are still there and still called where this module expects:
a new uvicorn that moves one fails that test loudly instead of silently dropping a limit."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from mockgen.http import refusals
from mockgen.http.dialects import Reply


class Phase(enum.Enum):
    HEAD = enum.auto()  # the client owes a request line and headers (a new connection too)
    BODY = enum.auto()  # the client owes the rest of a request body
    HANDLING = enum.auto()  # the server owes the answer: no timer here, the shutdown grace bounds it
    IDLE = enum.auto()  # kept alive between requests


@dataclass(frozen=True)
class Limits:
    header_timeout: float  # a head must be complete this long after its first byte (a new connection's
    # after the connect): a deadline, so a head sent a byte at a time is cut all the same
    body_timeout: float  # the longest pause between two reads of a body
    keep_alive_timeout: float  # how long an idle connection is kept between requests
    max_header_bytes: int  # request line and headers


class Connections:
    """The open connections of a process's mock listeners, oldest first. Both listeners share the process's
    file descriptors, hence one cap. At the cap a new connection evicts the oldest one that is waiting for its
    client (idle, or still sending a head), as nginx reuses idle keep-alive connections when it runs out;
    when every one is busy with a request, the new one is closed at once."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: dict[MockHttpProtocol, None] = {}

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, connection: MockHttpProtocol) -> bool:
        if len(self._open) >= self.cap:
            waiting = next((other for other in self._open if other.waits_for_client), None)
            if waiting is None:
                return False
            waiting.hang_up()
        self._open[connection] = None
        return True

    def discard(self, connection: MockHttpProtocol) -> None:
        self._open.pop(connection, None)

    def close_all(self) -> None:
        for connection in list(self._open):
            connection.hang_up()


class WireConfig(uvicorn.Config):
    """uvicorn's configuration plus what `MockHttpProtocol` reads: whose dialect it speaks, the limits, and
    the process's connections."""

    def __init__(
        self, app: ASGIApp, *, service: str, limits: Limits, connections: Connections, **settings: Any
    ) -> None:
        super().__init__(app, http=MockHttpProtocol, **settings)
        self.service = service
        self.limits = limits
        self.connections = connections


class HeadHeld(asyncio.Transport):
    """A response's transport (what uvicorn's request cycle writes to) that holds the head until the body's
    first write joins it, or the loop's next turn; every later write goes straight through."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writes += 1
        if self._writes == 1:
            self._head = bytes(data)
            self._loop.call_soon(self.flush)
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():  # the client left before the loop's turn came
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class MockHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, WireConfig):
            raise TypeError(f"{type(self).__name__} needs a WireConfig")
        self._service = config.service
        self._max_header_bytes = config.limits.max_header_bytes
        self._connections = config.connections
        self._timeouts = {
            Phase.HEAD: config.limits.header_timeout,
            Phase.BODY: config.limits.body_timeout,
            Phase.IDLE: config.limits.keep_alive_timeout,
        }
        self._phase = Phase.HEAD
        self._timed: Phase | None = None  # the phase whose deadline is set
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # when the current phase's wait ends the connection
        self._head_bytes = 0

    @property
    def waits_for_client(self) -> bool:
        """Idle, or sending a head while no earlier request of its own is being answered."""
        if self._phase is Phase.IDLE:
            return True
        return self._phase is Phase.HEAD and (self.cycle is None or self.cycle.response_complete)

    def hang_up(self) -> None:
        self._connections.discard(self)
        self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._connections.admit(self):
            transport.close()
            return
        self._settle()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._connections.discard(self)
        self._cancel_timer()

    def data_received(self, data: bytes) -> None:
        if self._phase is Phase.IDLE:
            self._enter(Phase.HEAD)  # the next head's deadline runs from its first byte
        elif self._phase is Phase.BODY:
            self._timed = None  # a read restarts the body's timer
        if self._phase is Phase.HEAD:
            room = self._max_header_bytes - self._head_bytes
            if len(data) > room:
                # Feed what the limit allows: the head may end in it (the rest is then body).
                super().data_received(data[:room])
                if self.transport.is_closing():
                    return
                if self._phase is Phase.HEAD:
                    self._refuse(refusals.head_too_large(self._service))
                    return
                data = data[room:]
            else:
                self._head_bytes += len(data)
        super().data_received(data)
        self._settle()

    # uvicorn's hooks

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse, in plain text; ours is in the dialect."""
        self._refuse(refusals.bad_request(self._service))

    def shutdown(self) -> None:
        if self._phase is Phase.BODY:
            # A body that has not come yet will not come in time: waiting for it only delays the exit.
            self.hang_up()
            return
        super().shutdown()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase is not Phase.HEAD:
            self._enter(Phase.HEAD)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.cycle.transport = HeadHeld(self.transport, self.loop)
        self._head_bytes = 0
        self._enter(Phase.BODY)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The app may have answered before the body had all come.
        self._enter(Phase.IDLE if self.cycle.response_complete else Phase.HANDLING)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        # uvicorn has just armed its keep-alive timer; the IDLE phase's replaces it.
        self._unset_keepalive_if_required()
        # With a pipelined request started (`self.cycle` is the newest), the connection stays HANDLING.
        if self._phase is Phase.HANDLING and self.cycle.response_complete:
            self._enter(Phase.IDLE)
        self._settle()

    # timers

    def _enter(self, phase: Phase) -> None:
        self._phase = phase
        self._timed = None

    def _settle(self) -> None:
        """Set the current phase's deadline, unless it is set already. One timer serves all phases: moved
        earlier when a deadline comes sooner, and set again for the deadline when it fires before it. Most
        phases end long before their deadline, so most need no timer of their own."""
        if self._timed is self._phase:
            return
        self._timed = self._phase
        timeout = self._timeouts.get(self._phase)
        if timeout is None:
            self._deadline = None
            return
        self._deadline = self.loop.time() + timeout
        if self._timer is not None and self._timer.when() > self._deadline:
            self._cancel_timer()
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._expire, self._deadline)

    def _expire(self, when: float) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._deadline <= when:
            self.hang_up()
        else:
            self._timer = self.loop.call_at(self._deadline, self._expire, self._deadline)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _refuse(self, reply: Reply) -> None:
        """Answer and hang up; only hang up while an answer to an earlier request may still be on its way."""
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(refusals.raw_response(reply))
        self.hang_up()
