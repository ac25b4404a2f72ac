"""What a mock server answers, in the service's dialect, to a request its app never sees or never finishes:
one the HTTP parser refuses (a malformed request line or header), a head over the size limit, a request
still running when the server shuts down. Sent with `Connection: close`: the connection ends after it.

Neither real server words these in its dialect: Synapse (Twisted) sends `400 Bad Request` with no body and
Letta (uvicorn with h11) a text/plain 400, for a malformed request and a head over 16 KiB alike. The mock
answers JSON shaped like the service's other errors, so that a client's error handling sees one shape, and
431 for a head too large, the status RFC 6585 gives it (and h11's own hint)."""

from __future__ import annotations

import http

from contracts.validation import compact_json
from mockgen.http.dialects import LettaDialect, MatrixDialect, Reply
from mockgen.store.matrix.errcodes import M_TOO_LARGE, M_UNKNOWN, M_UNRECOGNIZED


def _reply(service: str, status: int, errcode: str, error: str) -> Reply:
    if service == "matrix":
        return MatrixDialect.error(status, errcode, error)
    return LettaDialect.detail(status, error)


def bad_request(service: str) -> Reply:
    return _reply(service, 400, M_UNRECOGNIZED, "Invalid HTTP request received.")


def head_too_large(service: str) -> Reply:
    return _reply(service, 431, M_TOO_LARGE, "Request header fields too large")


def shutting_down(service: str) -> Reply:
    return _reply(service, 503, M_UNKNOWN, "The server is shutting down")


def raw_response(reply: Reply) -> bytes:
    """The whole HTTP/1.1 response, for a connection that has no request cycle to send it through."""
    body = compact_json(reply.body).encode()
    head = (
        f"HTTP/1.1 {reply.status} {http.HTTPStatus(reply.status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
