"""Route the requests of unmodified clients to the mocks: code under test that hard-codes
`http://192.168.50.90:8289` or `http://test-synapse:8008` and opens its own aiohttp sessions and httpx
clients (sync or async) talks to the mocks instead, and nothing it sends leaves the machine.

    with routed({"http://192.168.50.90:8289": letta_mock.url, "http://test-synapse:8008": matrix_mock.url}):
        await third_party_sync()

While active, a request to a routed base URL (scheme, host and port; any host name or IP literal) goes to
its target, with the `Host` header the client wrote; a request to a loopback address (127.0.0.0/8, ::1,
`localhost`) goes where it was sent; any other request is refused with `UnroutedRequest`, naming its URL,
before a name is resolved or a socket opened. Refusals are also kept in `Routes.refused`, for a client that
catches every exception. The pytest fixtures do this for the `routes` configuration (see the README)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from contracts.loopback import is_loopback
from mockgen import intercept

SCHEMES = {"http": 80, "https": 443}


class UnroutedRequest(RuntimeError):
    """A request to a non-loopback address that no route names, refused before any connection.

    Not an aiohttp or httpx error on purpose: a client's `except ClientError` retry loop must not take it
    for a network failure and swallow it."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"{url}: refused by mockgen routing before connecting: not loopback, and no route names "
            "this base URL (add it to the routes)"
        )
        self.url = url


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str) -> Origin:
    """The scheme, host and port of a base URL (default port filled in, host lower-cased). ValueError for a
    URL that is not http(s) or that carries a path, query or credentials: a route is per origin."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"route {url!r}: not an http:// or https:// base URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"route {url!r}: a route names a scheme, host and port only")
    try:
        port = parts.port or SCHEMES[scheme]
    except ValueError as exc:
        raise ValueError(f"route {url!r}: {exc}") from None
    return Origin(scheme, parts.hostname.lower(), port)


class Routes:
    """A routing table: origin -> loopback target origin, and what was refused while it was active."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        self.table: dict[Origin, Origin] = {}
        for source, target in routes.items():
            destination = origin_of(target)
            if not is_loopback(destination.host) or destination.scheme != "http":
                raise ValueError(f"route {source!r} -> {target!r}: the target is a mock, on http://loopback")
            self.table[origin_of(source)] = destination
        self.refused: list[str] = []
        self._lock = threading.Lock()

    def decide(self, scheme: str, host: str, port: int, url: str) -> tuple[str, str, int] | None:
        origin = Origin(scheme.lower(), host.strip("[]").lower(), port)
        target = self.table.get(origin)
        if target is not None:
            return target.scheme, target.host, target.port
        if is_loopback(origin.host):
            return None
        with self._lock:
            self.refused.append(url)
        raise UnroutedRequest(url)


_active: list[Routes] = []
_active_lock = threading.Lock()


def _decide(scheme: str, host: str, port: int, url: str) -> tuple[str, str, int] | None:
    # The innermost active table decides.
    return _active[-1].decide(scheme, host, port, url) if _active else None


@contextmanager
def routed(routes: Mapping[str, str]) -> Iterator[Routes]:
    """Route (and guard) every aiohttp and httpx request of this process while the block runs. Nests: the
    innermost table decides."""
    table = Routes(routes)
    with _active_lock:
        if not _active:
            intercept.install(_decide)
        _active.append(table)
    try:
        yield table
    finally:
        with _active_lock:
            _active.remove(table)
            if not _active:
                intercept.uninstall()
