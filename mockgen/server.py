"""Run both mock services with uvicorn: in the current event loop (`serve`) or on a background thread
(`MockServers.start`, what the pytest plugin uses).

A stop (SIGINT/SIGTERM under `mockgen serve`, or `MockServers.stop`) is bounded whatever is in flight:
long-running handlers are woken (`world.wakeups`), connections still owing a request head or body are cut
at once, and a request still running after `shutdown_grace` (an injected latency, say) is cancelled and
answered 503 in its service's dialect."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from mockgen.app import build_app
from mockgen.http import refusals
from mockgen.http.wire import Connections, Limits, WireConfig
from mockgen.world import World

try:
    import uvloop

    LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    LOOP_FACTORY = asyncio.new_event_loop

log = logging.getLogger("mockgen")
SERVICES = ("letta", "matrix")
# After the grace: how long cancelled requests get to send their 503, and uvicorn to wind down.
_WIND_DOWN = 0.5


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: two servers share one loop, and `serve` (or the test
    process) decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Abortable:
    """A service's app, its running requests known, so that a shutdown can cut those still running when the
    grace is over; one that has sent nothing yet is answered 503 in the service's dialect."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._running: set[asyncio.Task[object]] = set()
        self._aborting = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None  # uvicorn runs each request in a task of its own
        self._running.add(task)
        try:
            # `send` goes through untouched: the exchange layer drops a connection through it.
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not self._aborting:
                raise
            task.uncancel()
            reply = refusals.shutting_down(self.service)
            reply.headers["Connection"] = "close"
            # An answer already begun cannot be replaced: the server refuses a second start (as ASGI has
            # it) and closes the connection once this returns.
            with contextlib.suppress(RuntimeError):
                await reply.send(send)
        finally:
            self._running.discard(task)

    def abort(self) -> set[asyncio.Task[object]]:
        """Cancel every running request; returns their tasks."""
        self._aborting = True
        for task in self._running:
            task.cancel()
        return set(self._running)


def _bind(host: str, port: int) -> socket.socket:
    """Bound but not listening: uvicorn listens once it serves, so servers never served expose nothing."""
    # IPPROTO_TCP, not 0: accepted sockets copy it, and asyncio's own loop turns Nagle off only on sockets
    # that name TCP (uvloop does regardless); with Nagle on, a body written after its headers waits out
    # the client's delayed ACK (40 ms).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        # The OS names no address ("[Errno 98] Address already in use"): say which one.
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """The URL to announce. A wildcard address (0.0.0.0, ::) is nobody's address: the loopback one of its
    family is, on this machine and wherever its ports are forwarded to localhost (a container's published
    ports); a host name may not resolve, or resolve elsewhere."""
    host, port = sock.getsockname()[:2]
    address = ipaddress.ip_address(host)
    if address.is_unspecified:
        host = "::1" if address.version == 6 else "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def exposure(sock: socket.socket) -> str | None:
    """The warning for a socket bound beyond loopback; None on loopback."""
    address = ipaddress.ip_address(sock.getsockname()[0])
    if address.is_loopback:
        return None
    where = "every interface" if address.is_unspecified else str(address)
    return (
        f"the mocks listen on {where}, beyond loopback: anyone who can reach this machine can use them and "
        "their control API (/_mock/: reset, seed users and admins, inject faults)"
    )


def default_max_connections() -> int:
    """Half the process's open-file limit, at most 1024: the other half stays for whatever else the process
    opens (in a test process, its own clients' sockets)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(1, min(1024, soft // 2))


@dataclass
class Endpoints:
    letta: str
    matrix: str


class MockServers:
    """The Letta and Matrix mocks of one `World`, each on its own port (0: any free port)."""

    def __init__(
        self, world: World, *, host: str = "127.0.0.1", letta_port: int = 0, matrix_port: int = 0
    ) -> None:
        self.world = world
        self._letta_socket = _bind(host, letta_port)
        try:
            self._matrix_socket = _bind(host, matrix_port)
        except OSError:
            self._letta_socket.close()
            raise
        self.endpoints = Endpoints(url_of(self._letta_socket), url_of(self._matrix_socket))
        warning = exposure(self._letta_socket)
        if warning is not None:
            log.warning(warning)
        world.set_public_url(self.endpoints.matrix)
        config = world.config
        self.limits = Limits(
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
            keep_alive_timeout=config.keep_alive_timeout,
            max_header_bytes=config.max_header_bytes,
        )
        self.connections = Connections(config.max_connections or default_max_connections())
        self._apps = {service: _Abortable(build_app(service, world), service) for service in SERVICES}
        self._servers = [_QuietServer(self._config(service)) for service in SERVICES]
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def _config(self, service: str) -> WireConfig:
        return WireConfig(
            self._apps[service],
            service=service,
            limits=self.limits,
            connections=self.connections,
            lifespan="off",
            ws="none",
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
        )

    async def serve(
        self, stop: asyncio.Event | None = None, on_ready: Callable[[Endpoints], None] | None = None
    ) -> None:
        """Serve until `stop` is set (or forever), calling `on_ready` once both servers accept connections."""
        self.world.wakeups.reopen()
        sockets = [[self._letta_socket], [self._matrix_socket]]
        tasks = [
            asyncio.create_task(server.serve(sockets=s))
            for server, s in zip(self._servers, sockets, strict=True)
        ]
        while not all(server.started for server in self._servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.005)
        if on_ready is not None and all(server.started for server in self._servers):
            on_ready(self.endpoints)
        waiter = asyncio.create_task(stop.wait()) if stop is not None else None
        pending = {*tasks, *([waiter] if waiter else [])}
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await self._shut_down(tasks)
        if waiter is not None:
            waiter.cancel()
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _shut_down(self, tasks: list[asyncio.Task[None]]) -> None:
        """uvicorn's graceful shutdown, bounded: the grace for running requests, then they are cut."""
        self.world.wakeups.close()
        for server in self._servers:
            server.should_exit = True
        _, pending = await asyncio.wait(tasks, timeout=self.world.config.shutdown_grace)
        if not pending:
            return
        cut: set[asyncio.Task[object]] = set()
        for app in self._apps.values():
            cut |= app.abort()
        if cut:
            await asyncio.wait(cut, timeout=_WIND_DOWN)
        self.connections.close_all()
        for server in self._servers:
            server.force_exit = True  # uvicorn stops waiting for connections and tasks
        _, stuck = await asyncio.wait(pending, timeout=_WIND_DOWN)
        for task in stuck:
            task.cancel()

    def start(self, timeout: float = 15.0) -> Endpoints:
        """Serve on a background thread; returns once both servers accept connections."""
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = LOOP_FACTORY()
        stop = asyncio.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.serve(stop, lambda _: ready.set()))
            except BaseException as exc:  # handed to the starting thread below
                failure.append(exc)
            finally:
                ready.set()
                loop.close()

        self._loop, self._stop = loop, stop
        self._thread = threading.Thread(target=run, name="mockgen-servers", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"mock servers not ready after {timeout} s")
        if failure:
            raise RuntimeError("mock servers failed to start") from failure[0]
        return self.endpoints

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background servers started with `start` and wait for their thread (the shutdown itself
        takes at most `shutdown_grace` and a second)."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"mock servers still running {timeout} s after the stop")
        self._thread = None
