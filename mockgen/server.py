"""Run both mock services with uvicorn: in the current event loop (`serve`) or on a background thread
(`MockServers.start`, what the pytest plugin uses)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn

from mockgen.app import build_app
from mockgen.world import World

try:
    import uvloop

    LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    LOOP_FACTORY = asyncio.new_event_loop


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: two servers share one loop, and `serve` (or the test
    process) decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class Endpoints:
    letta: str
    matrix: str


class MockServers:
    """The Letta and Matrix mocks of one `World`, each on its own loopback port (0: any free port)."""

    def __init__(
        self, world: World, *, host: str = "127.0.0.1", letta_port: int = 0, matrix_port: int = 0
    ) -> None:
        self.world = world
        self._letta_socket = _bind(host, letta_port)
        self._matrix_socket = _bind(host, matrix_port)
        self.endpoints = Endpoints(url_of(self._letta_socket), url_of(self._matrix_socket))
        world.set_public_url(self.endpoints.matrix)
        self._servers = [
            _QuietServer(self._config("letta")),
            _QuietServer(self._config("matrix")),
        ]
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def _config(self, service: str) -> uvicorn.Config:
        return uvicorn.Config(
            build_app(service, self.world),
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=30,
        )

    async def serve(
        self, stop: asyncio.Event | None = None, on_ready: Callable[[Endpoints], None] | None = None
    ) -> None:
        """Serve until `stop` is set (or forever), calling `on_ready` once both servers accept connections."""
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
        for server in self._servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        if waiter is not None:
            waiter.cancel()
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

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
        """Stop the background servers started with `start` and wait for their thread."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None
