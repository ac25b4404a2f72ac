"""The mock servers' lifecycle and listeners: a stop is bounded whatever is in flight (under `mockgen serve`
and for `MockServers.stop`), slow clients are cut, heads are bounded, connections capped, malformed HTTP
answered in the service's dialect, and a bind beyond loopback warns and is never announced as 0.0.0.0.

No test sleeps for a timeout to pass: each waits on what it observes (a closed connection, a counter, an
exited process), with the limits made tiny, and measures the bound it asserts."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from mockgen.cli import ready_urls
from mockgen.http.wire import HeadHeld
from mockgen.server import MockServers, url_of
from mockgen.wakeups import Wakeups
from mockgen.world import MockConfig, World

ROOT = Path(__file__).resolve().parent.parent
STOP_BOUND = 2.0  # seconds, from the signal (or `stop()`) to the end
TINY = 0.3  # the read timeouts of the `tight` servers
LOGIN = "/_matrix/client/v3/login"
STALLED_UPLOAD = (
    f"POST {LOGIN} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
    "Expect: 100-continue\r\n\r\n{"
).encode()


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host.strip("[]"), int(port)


def _connect(url: str, sent: bytes = b"") -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=10)
    if sent:
        sock.sendall(sent)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" when it says nothing)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` without a word within `seconds` (a timeout here fails the test)."""
    sock.settimeout(seconds)
    return _read_all(sock) == b""


def _answer(raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (f.partition(": ") for f in fields)}
    return int(status_line.split(" ")[1]), json.loads(body), headers


def _request(url: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(sent, timeout=10) as answer:
        return json.load(answer)


def _until(condition: Any, what: str, bound: float = 10.0) -> None:
    """Poll `condition` (observed state, not a timeout running out) until it holds."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {bound} s: {what}"
        time.sleep(0.005)


def _fault(url: str, **fault: Any) -> None:
    _request(url, "/_mock/faults", fault)


def _fired(url: str) -> int:
    with urllib.request.urlopen(url + "/_mock/faults", timeout=10) as answer:
        return sum(fault["fired"] for fault in json.load(answer))


# -- `mockgen serve` stops within the bound


class Served:
    """A `mockgen serve` process on free loopback ports."""

    def __init__(self, *options: str, open_files: int | None = None) -> None:
        # The limit is set in the child itself: a `preexec_fn` is unsafe beside the threads of this process.
        limit = (
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({open_files}, {open_files}))" if open_files else ""
        )
        run = f"import resource, sys\n{limit}\nfrom mockgen.cli import main\nsys.exit(main(sys.argv[1:]))"
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - read back when the start fails
        self.process = subprocess.Popen(
            [sys.executable, "-c", run, "serve", "--letta-port", "0", "--matrix-port", "0", *options],
            stdout=subprocess.PIPE, stderr=self.errors, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            urls = ready_urls(self.process)
        except (TimeoutError, RuntimeError) as exc:
            self.errors.seek(0)
            raise AssertionError(f"{exc}: {self.errors.read().decode(errors='replace')}") from exc
        assert list(urls) == ["letta", "matrix"], urls
        self.letta, self.matrix = urls["letta"], urls["matrix"]

    def stop_with(self, signum: int) -> tuple[int, float]:
        """Send `signum`; the exit status and how long the process took to end."""
        started = time.monotonic()
        self.process.send_signal(signum)
        status = self.process.wait(timeout=30)
        return status, time.monotonic() - started

    def listening(self) -> bool:
        try:
            _connect(self.matrix).close()
        except ConnectionRefusedError:
            return False
        return True

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.errors.close()


@pytest.fixture
def served() -> Iterator[list[Served]]:
    """Processes a test starts, killed if the test leaves one behind."""
    started: list[Served] = []
    yield started
    for process in started:
        process.kill()


def _stalled_upload(mock: Served) -> socket.socket:
    upload = _connect(mock.matrix, STALLED_UPLOAD)
    # The interim answer comes once the app waits for the body: the request is in flight.
    assert upload.recv(100).startswith(b"HTTP/1.1 100 Continue")
    return upload


def _one_long_latency(mock: Served) -> socket.socket:
    _fault(mock.matrix, operation="login", latency_ms=60_000, times=0)
    waiting = _connect(
        mock.matrix, f"POST {LOGIN} HTTP/1.1\r\nHost: mock\r\nContent-Length: 2\r\n\r\n{{}}".encode()
    )
    _until(lambda: _fired(mock.matrix) == 1, "the request delayed")
    return waiting


def test_sigterm_ends_serve_within_the_bound_whatever_is_in_flight(served: list[Served]) -> None:
    """A stalled upload, a request under a 60 s latency fault and 100 more waiting on Letta's port, at once
    (one process: each scenario alone is a subset; `test_stop_is_bounded_whatever_is_in_flight` below takes
    them apart)."""
    mock = Served()
    served.append(mock)
    upload = _stalled_upload(mock)
    delayed = _one_long_latency(mock)
    _fault(mock.letta, path="^/v1/agents", latency_ms=60_000, times=0)
    request = b"GET /v1/agents/ HTTP/1.1\r\nHost: mock\r\nAuthorization: Bearer mock-letta-token\r\n\r\n"
    waiting = [_connect(mock.letta, request) for _ in range(100)]
    _until(lambda: _fired(mock.letta) == 1 + 100, "100 more requests delayed")  # one table for both ports

    status, took = mock.stop_with(signal.SIGTERM)
    assert (status, took < STOP_BOUND) == (0, True), f"exit {status} after {took:.2f} s"
    assert _read_all(upload) == b""  # cut at once, unanswered: the client was still sending
    assert _answer(_read_all(delayed))[:2] == (
        503, {"errcode": "M_UNKNOWN", "error": "The server is shutting down"}
    )  # fmt: skip
    for sock in waiting:
        assert _answer(_read_all(sock))[:2] == (503, {"detail": "The server is shutting down"})
    for sock in [upload, delayed, *waiting]:
        sock.close()


def test_a_second_signal_stops_at_once(served: list[Served]) -> None:
    mock = Served("--shutdown-grace", "60")
    served.append(mock)
    _one_long_latency(mock)
    mock.process.send_signal(signal.SIGINT)
    _until(lambda: not mock.listening(), "the first signal handled (listeners closed)")
    status, took = mock.stop_with(signal.SIGINT)
    # Killed by the signal's default action, not after the 60 s grace.
    assert (status, took < 1.0) == (-signal.SIGINT, True), f"exit {status} after {took:.2f} s"


def test_300_idle_connections_under_a_256_file_limit_do_not_lock_new_clients_out(
    served: list[Served],
) -> None:
    mock = Served(open_files=256)  # the cap is then 128 connections for both listeners
    served.append(mock)
    idle = [_connect(mock.matrix) for _ in range(300)]
    assert "versions" in _request(mock.matrix, "/_matrix/client/versions")
    assert "versions" in _request(mock.matrix, "/_matrix/client/versions")
    status, took = mock.stop_with(signal.SIGINT)
    assert (status, took < STOP_BOUND) == (0, True)
    for sock in idle:
        sock.close()


# -- the listeners' limits, on servers of their own with tiny ones


@pytest.fixture(scope="module")
def tight() -> Iterator[MockServers]:
    config = MockConfig(
        header_timeout=TINY, body_timeout=TINY, keep_alive_timeout=TINY, max_header_bytes=1024,
        max_connections=40, shutdown_grace=0.2,
    )  # fmt: skip
    servers = MockServers(World(config))
    servers.start()
    yield servers
    servers.stop()


def _cut_after(sock: socket.socket) -> float:
    """How long the server took to close `sock` without a word."""
    started = time.monotonic()
    assert _read_all(sock) == b""
    return time.monotonic() - started


def test_a_head_never_finished_is_cut(tight: MockServers) -> None:
    with _connect(tight.endpoints.matrix, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: mock\r\n") as half:
        assert _cut_after(half) < TINY + 1.5
    with _connect(tight.endpoints.matrix) as silent:  # a connection that never says a word
        assert _cut_after(silent) < TINY + 1.5


def test_a_head_sent_a_byte_at_a_time_is_cut_at_its_deadline(tight: MockServers) -> None:
    head = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: mock\r\nX-Slow: " + b"a" * 100
    with _connect(tight.endpoints.matrix) as slow:
        slow.settimeout(TINY / 6)  # a byte every TINY/6 s: no pause is long, the whole head is
        started = time.monotonic()
        for byte in head:
            try:
                if slow.recv(1) == b"":
                    break
                slow.sendall(bytes([byte]))
            except TimeoutError:
                slow.sendall(bytes([byte]))
            except ConnectionError:
                break
        else:
            pytest.fail("a head sent a byte at a time was never cut")
        assert time.monotonic() - started < TINY + 1.5


def test_a_stalled_body_is_cut_and_a_slow_one_is_not(tight: MockServers) -> None:
    with _connect(tight.endpoints.matrix, STALLED_UPLOAD) as stalled:
        assert stalled.recv(100).startswith(b"HTTP/1.1 100 Continue")
        assert _cut_after(stalled) < TINY + 1.5
    body = b'{"type": "m.login.password", "user": "admin", "password": "admin_password"}'
    head = f"POST {LOGIN} HTTP/1.1\r\nHost: mock\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with _connect(tight.endpoints.matrix, head) as slow:
        for start in range(
            0, len(body), len(body) // 4 + 1
        ):  # pauses shorter than the timeout, longer in all
            time.sleep(TINY / 3)
            slow.sendall(body[start : start + len(body) // 4 + 1])
        slow.shutdown(socket.SHUT_WR)
        status, answer, _ = _answer(_read_all(slow))
    assert (status, answer["user_id"]) == (200, "@admin:matrix.test")


def test_an_idle_keep_alive_connection_is_reclaimed(tight: MockServers) -> None:
    with _connect(
        tight.endpoints.matrix, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: mock\r\n\r\n"
    ) as kept:
        assert kept.recv(65536).startswith(b"HTTP/1.1 200 OK")
        assert _cut_after(kept) < TINY + 1.5


def test_a_short_deadline_after_a_long_one_still_cuts_in_time() -> None:
    """One timer serves a connection's phases: a head's short deadline after a long keep-alive wait must move
    it earlier, not wait for the keep-alive's."""
    config = MockConfig(header_timeout=TINY, body_timeout=60, keep_alive_timeout=60, shutdown_grace=0.2)
    servers = MockServers(World(config))
    servers.start()
    try:
        with _connect(
            servers.endpoints.matrix, b"GET /_matrix/client/versions HTTP/1.1\r\nHost: mock\r\n\r\n"
        ) as kept:
            assert kept.recv(65536).startswith(b"HTTP/1.1 200 OK")  # idle now, for up to 60 s
            (connection,) = list(servers.connections._open)

            def waits_for_keep_alive() -> bool:  # the first head's timer has fired and moved to 60 s
                timer = connection._timer
                return timer is not None and timer.when() > connection.loop.time() + 30

            _until(waits_for_keep_alive, "the connection's one timer set for its keep-alive deadline")
            kept.sendall(b"GET /_matrix/client/versions HTTP/1.1\r\n")  # a head begun, never finished
            assert _cut_after(kept) < TINY + 1.5
    finally:
        servers.stop()


@pytest.mark.parametrize(
    ("service", "body"),
    [
        ("matrix", {"errcode": "M_TOO_LARGE", "error": "Request header fields too large"}),
        ("letta", {"detail": "Request header fields too large"}),
    ],
)
def test_a_head_over_the_limit_is_431_in_the_dialect(
    tight: MockServers, service: str, body: dict[str, str]
) -> None:
    url = getattr(tight.endpoints, service)
    # Sent in one piece, read in one: the server answers before it hangs up. A client still sending when
    # it does (a 64 MiB header) gets its connection reset instead, as from Synapse.
    with _connect(url, b"GET / HTTP/1.1\r\nHost: mock\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n") as big:
        status, answer, headers = _answer(_read_all(big))
    assert (status, answer, headers["connection"]) == (431, body, "close")


def test_a_head_at_the_limit_with_a_body_past_it_is_served(tight: MockServers) -> None:
    body = json.dumps(
        {"type": "m.login.password", "user": "admin", "password": "admin_password" + " " * 2000}
    )
    head = f"POST {LOGIN} HTTP/1.1\r\nHost: mock\r\nContent-Length: {len(body)}\r\nX-Pad: ".encode()
    head += b"a" * (1024 - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == 1024
    with _connect(tight.endpoints.matrix, head + body.encode()) as sent:  # head and body in one piece
        sent.shutdown(socket.SHUT_WR)
        status, answer, _ = _answer(_read_all(sent))
    assert (status, answer["errcode"]) == (403, "M_FORBIDDEN")  # the padded password is wrong


INVALID = "Invalid HTTP request received."


@pytest.mark.parametrize(
    ("service", "sent", "body"),
    [
        ("matrix", b"GARBAGE\r\n\r\n", {"errcode": "M_UNRECOGNIZED", "error": INVALID}),
        (
            "matrix",
            b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
            {"errcode": "M_UNRECOGNIZED", "error": INVALID},
        ),
        ("letta", b"GET /v1/agents/ HTTP/9.9\r\n\r\n", {"detail": INVALID}),
        ("letta", b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", {"detail": INVALID}),
    ],
    ids=["matrix request line", "matrix header", "letta request line", "letta header"],
)
def test_malformed_http_is_answered_in_the_dialect(
    tight: MockServers, service: str, sent: bytes, body: dict[str, str]
) -> None:
    with _connect(getattr(tight.endpoints, service), sent) as bad:
        status, answer, headers = _answer(_read_all(bad))
    assert (status, answer, headers["content-type"]) == (400, body, "application/json")


def test_idle_connections_beyond_the_cap_make_room_for_new_clients() -> None:
    # Read timeouts far longer than the test: only eviction can close a connection here.
    config = MockConfig(header_timeout=60, keep_alive_timeout=60, max_connections=40)
    servers = MockServers(World(config))
    endpoints = servers.start()
    idle = [_connect(endpoints.letta) for _ in range(100)]
    try:
        assert "versions" in _request(endpoints.matrix, "/_matrix/client/versions")
        assert len(servers.connections) <= servers.connections.cap == 40
        # The oldest were closed at once to make room; the newest are still open.
        assert _closed_within(idle[0], 2.0)
        idle[-1].setblocking(False)
        with pytest.raises(BlockingIOError):
            idle[-1].recv(1)
    finally:
        for sock in idle:
            sock.close()
        servers.stop()


# -- MockServers.stop, as the pytest plugin stops them


def test_stop_is_bounded_whatever_is_in_flight() -> None:
    servers = MockServers(World(MockConfig(max_connections=102)))
    endpoints = servers.start()
    servers.world.faults.add(operation="login", latency_ms=60_000, times=0)
    request = f"POST {LOGIN} HTTP/1.1\r\nHost: mock\r\nContent-Length: 2\r\n\r\n{{}}".encode()

    def delayed() -> int:
        return int(servers.world.faults.list()[0]["fired"])

    waiting = [_connect(endpoints.matrix, request) for _ in range(100)]
    _until(lambda: delayed() == 100, "100 requests delayed")
    upload = _connect(endpoints.matrix, STALLED_UPLOAD)
    assert upload.recv(100).startswith(b"HTTP/1.1 100 Continue")
    idle = _connect(endpoints.letta)  # the 102nd connection: the cap
    # The oldest connection waiting for its client is evicted for a newcomer...
    newcomer = _connect(endpoints.matrix, request)
    _until(lambda: delayed() == 101, "the newcomer's request delayed")
    assert _closed_within(idle, 2.0)  # long before its 10 s header timeout
    # ... and with every one busy, a newcomer is closed at once.
    assert _closed_within(_connect(endpoints.letta), 2.0)

    started = time.monotonic()
    servers.stop()
    took = time.monotonic() - started
    assert took < STOP_BOUND
    assert _read_all(upload) == b""
    for sock in [*waiting, newcomer]:
        status, answer, headers = _answer(_read_all(sock))
        assert (status, answer["errcode"], headers["connection"]) == (503, "M_UNKNOWN", "close")
    for sock in [*waiting, upload, idle, newcomer]:
        sock.close()


# -- the world's wakeups, for long-running handlers


async def test_wakeups_wake_their_waiters_from_any_thread() -> None:
    wakeups = Wakeups()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):  # as a long-poll bounds its wait
            await wakeups.wait()
    waiter = asyncio.create_task(wakeups.wait())
    await asyncio.sleep(0)  # the waiter is registered
    threading.Thread(target=wakeups.wake).start()
    await asyncio.wait_for(waiter, 5)


async def test_wakeups_closed_wake_everyone_and_wait_no_more_until_reopened() -> None:
    wakeups = Wakeups()
    waiter = asyncio.create_task(wakeups.wait())
    await asyncio.sleep(0)
    wakeups.close()
    await asyncio.wait_for(waiter, 5)
    assert wakeups.closing
    await asyncio.wait_for(wakeups.wait(), 5)  # at once
    wakeups.reopen()
    assert not wakeups.closing
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(wakeups.wait(), 0.01)


async def test_a_reset_wakes_the_worlds_waiters() -> None:
    world = World()
    waiter = asyncio.create_task(world.wakeups.wait())
    await asyncio.sleep(0)
    world.reset()
    await asyncio.wait_for(waiter, 5)


# -- binding beyond loopback


def test_a_wildcard_bind_warns_and_announces_loopback(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    with caplog.at_level(logging.WARNING, logger="mockgen"):
        servers = MockServers(world, host="0.0.0.0")  # bound, never served: nothing listens
    try:
        assert servers.endpoints.matrix.startswith("http://127.0.0.1:")
        assert servers.endpoints.letta.startswith("http://127.0.0.1:")
        base_url = world.matrix.login(user="admin", password="admin_password")["well_known"]
        assert base_url == {"m.homeserver": {"base_url": servers.endpoints.matrix + "/"}}
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert "every interface, beyond loopback" in warning.getMessage()
    finally:
        for sock in (servers._letta_socket, servers._matrix_socket):
            sock.close()


def test_an_ipv6_wildcard_is_announced_as_its_loopback() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        pytest.skip("no IPv6 here")
    with sock:
        sock.bind(("::", 0))
        assert url_of(sock) == f"http://[::1]:{sock.getsockname()[1]}"


def test_a_loopback_bind_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mockgen"):
        servers = MockServers(World())
    try:
        assert caplog.records == []
    finally:
        for sock in (servers._letta_socket, servers._matrix_socket):
            sock.close()


# -- the uvicorn hooks mockgen/http/wire.py relies on


def test_uvicorn_still_has_the_hooks_the_wire_overrides() -> None:
    hooks = [
        "connection_made", "connection_lost", "data_received", "send_400_response", "shutdown",
        "on_message_begin", "on_headers_complete", "on_message_complete", "on_response_complete",
        "_unset_keepalive_if_required",
    ]  # fmt: skip
    missing = [name for name in hooks if name not in vars(HttpToolsProtocol)]
    assert missing == [], f"uvicorn moved {missing}: mockgen/http/wire.py needs a new hook"
    calls = {
        "data_received": "self.send_400_response(",  # how a parse error is answered
        "on_response_complete": "self.timeout_keep_alive_task = ",  # the keep-alive timer wire replaces
        "on_headers_complete": "on_response=self.on_response_complete",  # a cycle calls the protocol back
    }
    for method, call in calls.items():
        source = inspect.getsource(getattr(HttpToolsProtocol, method))
        assert call in source, f"uvicorn's HttpToolsProtocol.{method} no longer does `{call}`"
    # HeadHeld stands in for the transport a request cycle writes its answer to.
    assert "self.cycle = RequestResponseCycle(" in inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "self.transport.write(" in inspect.getsource(RequestResponseCycle.send)


class _Written(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_an_answer_head_goes_out_with_its_body_in_one_write() -> None:
    wire = _Written()
    held = HeadHeld(wire, asyncio.get_running_loop())
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert wire.writes == []
    held.write(b"{}")
    held.write(b"more")
    assert wire.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"more"]


async def test_a_head_without_its_body_goes_out_on_the_loops_next_turn() -> None:
    wire = _Written()
    held = HeadHeld(wire, asyncio.get_running_loop())
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")  # a stream's head; its first event comes later
    await asyncio.sleep(0)
    assert wire.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    held.write(b"data: 1\n\n")
    assert wire.writes[1:] == [b"data: 1\n\n"]
    closing = HeadHeld(wire, asyncio.get_running_loop())
    closing.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    closing.close()  # what is held goes first
    assert wire.writes[-1] == b"HTTP/1.1 500 Internal Server Error\r\n\r\n"
    assert wire.closed
