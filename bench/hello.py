"""The practical ceiling: a bare ASGI app answering every request with a small JSON body, served by
uvicorn with the mock's own settings (httptools, uvloop, no access log). It reads the request body, as
the mock must."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

BODY = b'{"event_id":"$hello"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
