"""An answer sent as it is made: server-sent events, each its own ASGI body message (`more_body`), so a
client reads the first event while the rest is still to come. The exchange layer passes them through as
they come and checks the whole stream once it ended (see `exchange`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.types import Send

from contracts.validation.sse import SSE_MEDIA_TYPE

# Sent instead of the next event to have the exchange layer close the connection mid-stream.
DROP_CONNECTION = "mockgen.drop_connection"
# Set on the start message of a stream that breaks the contract on purpose (a fault, a scripted cut): the
# exchange layer journals it without calling it a mock bug.
ON_PURPOSE = "mockgen.on_purpose"


@dataclass
class StreamReply:
    """A `text/event-stream` answer: the encoded events, and how to misbehave while sending them."""

    status: int
    events: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    delay_ms: int = 0
    cut_after: int | None = None
    stall_after: int | None = None
    stall_ms: int = 0
    on_purpose: bool = False
    # What ends a stall early (a reset of the world, the servers' stop): the stream is then cut.
    woken: Callable[[], Awaitable[None]] | None = None

    async def send(self, send: Send) -> None:
        if self.delay_ms:
            await asyncio.sleep(self.delay_ms / 1000)
        headers = [(b"content-type", f"{SSE_MEDIA_TYPE}; charset=utf-8".encode())]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        start = {"type": "http.response.start", "status": self.status, "headers": headers}
        if self.on_purpose or self.cut_after is not None:
            start[ON_PURPOSE] = True
        await send(start)
        for index, event in enumerate(self.events):
            if index == self.cut_after:
                await send({"type": DROP_CONNECTION})
                return
            if index == self.stall_after and self.stall_ms and not await self._stall():
                await send({"type": DROP_CONNECTION})
                return
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if self.cut_after is not None and self.cut_after >= len(self.events):
            await send({"type": DROP_CONNECTION})
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stall(self) -> bool:
        """Wait `stall_ms`; False when woken first."""
        if self.woken is None:
            await asyncio.sleep(self.stall_ms / 1000)
            return True
        try:
            async with asyncio.timeout(self.stall_ms / 1000):
                await self.woken()
        except TimeoutError:
            return True
        return False
