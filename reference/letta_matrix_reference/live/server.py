"""The lifecycle Synapse and Letta share: :class:`ManagedServer` installs, starts, waits for readiness and
stops one server process, and never leaks it (an ``atexit`` hook here, a
:class:`~letta_matrix_reference.live.watchdog.Watchdog` beside it); :func:`stop_from_state` stops one that
another process started.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import contextlib
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from letta_matrix_reference.live.errors import LiveError, ServerStartError
from letta_matrix_reference.live.net import LOOPBACK, free_port, wait_until_ready
from letta_matrix_reference.live.process import STOP_TIMEOUT, proc_start_ticks, start_process, stop_process
from letta_matrix_reference.live.state import STATE_FILE, read_state, write_state
from letta_matrix_reference.live.watchdog import Watchdog

log = logging.getLogger("letta_matrix_reference.live.server")

# What the atexit hook stops: every server this process started and has not stopped, by id() of its object.
_CLEANUPS: dict[int, Callable[[], None]] = {}
_CLEANUPS_LOCK = threading.Lock()


def register_cleanup(key: int, fn: Callable[[], None]) -> None:
    with _CLEANUPS_LOCK:
        _CLEANUPS[key] = fn


def unregister_cleanup(key: int) -> None:
    with _CLEANUPS_LOCK:
        _CLEANUPS.pop(key, None)


@atexit.register
def _run_cleanups() -> None:
    with _CLEANUPS_LOCK:
        pending = list(_CLEANUPS.values())
        _CLEANUPS.clear()
    for fn in pending:
        try:
            fn()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            log.exception("cleanup at exit failed")


def stop_from_state(workdir: Path, *, timeout: float = STOP_TIMEOUT, keep_workdir: bool = False) -> bool:
    """Stop the server whose state file is in ``workdir`` (PID and start time must still match).

    Removes the workdir afterwards if the server created it, unless ``keep_workdir``.
    """
    state = read_state(workdir)
    pid = int(state["pid"])
    ticks = state.get("start_ticks")
    stopped = stop_process(
        pid, int(ticks) if ticks is not None else None, timeout=timeout, name=str(state.get("kind", "server"))
    )
    if state.get("owns_workdir") and not keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            (workdir / STATE_FILE).unlink()
    return stopped


InfoT = TypeVar("InfoT")


@dataclass
class _Running:
    popen: subprocess.Popen[bytes]
    start_ticks: int | None
    port: int
    watchdog: Watchdog | None = None


class ManagedServer(abc.ABC, Generic[InfoT]):
    """Start/stop lifecycle of one server process, usable as a sync or async context manager.

    Subclasses say how to install (``_install``), what to run (``_prepare``), where readiness
    is probed (``ready_path``) and what to do once ready (``_on_ready``, which returns the info).
    """

    kind: ClassVar[str] = "server"
    ready_path: ClassVar[str] = "/"
    default_start_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int = 0,
        cache_dir: Path | None = None,
        detach: bool = False,
        keep_workdir: bool = False,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"bad port {port}")
        self._requested_workdir = Path(workdir).resolve() if workdir is not None else None
        self._requested_port = port
        self._cache_dir = cache_dir
        self._detach = detach
        self._keep_workdir = keep_workdir
        self._workdir: Path | None = None
        self._owns_workdir = False
        self._running: _Running | None = None
        self._info: InfoT | None = None
        self._lock = threading.RLock()

    # -- hooks ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def _install(self) -> Path:
        """Make sure the server is installed; return the python of its venv."""

    @abc.abstractmethod
    def _prepare(self, python: Path, workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
        """Write config into ``workdir``; return the command line and the environment."""

    @abc.abstractmethod
    def _on_ready(self, url: str, pid: int, deadline: float) -> InfoT:
        """Called once the readiness probe answered 200; returns the public info."""

    def _state(self, info: InfoT) -> dict[str, object]:
        """Extra JSON-able fields for the state file."""
        return {}

    def _secrets(self) -> list[str]:
        """Strings to redact from log tails quoted in errors."""
        return []

    # -- properties ------------------------------------------------------------------------------

    @property
    def workdir(self) -> Path | None:
        return self._workdir

    @property
    def log_path(self) -> Path | None:
        return self._workdir / f"{self.kind}.log" if self._workdir is not None else None

    @property
    def info(self) -> InfoT | None:
        return self._info

    @property
    def pid(self) -> int | None:
        return self._running.popen.pid if self._running is not None else None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> InfoT:
        """Install if needed (not counted in ``timeout``), start, and wait until ready."""
        with self._lock:
            if self._running is not None:
                raise LiveError(f"{self.kind} already started (pid {self._running.popen.pid})")
            python = self._install()
            timeout = self.default_start_timeout if timeout is None else timeout
            deadline = time.monotonic() + timeout
            attempts = 3 if self._requested_port == 0 else 1
            for attempt in range(1, attempts + 1):
                try:
                    return self._start_once(python, deadline)
                except ServerStartError as exc:
                    if attempt < attempts and exc.port_clash and time.monotonic() < deadline:
                        log.warning("%s: picked port was taken meanwhile; retrying", self.kind)
                        continue
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _make_workdir(self) -> Path:
        if self._requested_workdir is not None:
            self._requested_workdir.mkdir(parents=True, exist_ok=True)
            self._owns_workdir = False
            return self._requested_workdir
        self._owns_workdir = True
        return Path(tempfile.mkdtemp(prefix=f"live-{self.kind}-"))

    def _start_once(self, python: Path, deadline: float) -> InfoT:
        workdir = self._workdir = self._make_workdir()
        port = self._requested_port or free_port()
        cmd, env = self._prepare(python, workdir, port)
        log_path = workdir / f"{self.kind}.log"
        url = f"http://{LOOPBACK}:{port}"
        log.info("starting %s on %s (workdir %s)", self.kind, url, workdir)
        t0 = time.monotonic()
        popen = start_process(cmd, env=env, cwd=workdir, log_path=log_path)
        self._running = running = _Running(popen, proc_start_ticks(popen.pid), port)
        if not self._detach:
            register_cleanup(id(self), self.stop)
            try:
                running.watchdog = Watchdog(
                    python,
                    popen.pid,
                    running.start_ticks,
                    STOP_TIMEOUT,
                    remove_dir=workdir if self._owns_workdir and not self._keep_workdir else None,
                )
            except OSError as exc:  # not fatal: atexit still covers normal exits
                log.warning("%s: could not start the watchdog: %s", self.kind, exc)
        try:
            wait_until_ready(
                url + self.ready_path,
                proc=popen,
                deadline=deadline,
                log_path=log_path,
                name=self.kind,
                hide=self._secrets(),
            )
            info = self._on_ready(url, popen.pid, deadline)
        except BaseException:
            self.stop()
            raise
        self._info = info
        log.info("%s ready at %s (pid %d) in %.2fs", self.kind, url, popen.pid, time.monotonic() - t0)
        state: dict[str, object] = {
            "kind": self.kind,
            "url": url,
            "port": port,
            "pid": popen.pid,
            "start_ticks": self._running.start_ticks,
            "workdir": str(workdir),
            "owns_workdir": self._owns_workdir,
            "log": str(log_path),
            **self._state(info),
        }
        write_state(workdir, state)
        return info

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after the stop timeout) and remove a temp workdir. Idempotent."""
        with self._lock:
            running, self._running = self._running, None
            unregister_cleanup(id(self))
            if running is not None:
                try:
                    stop_process(
                        running.popen.pid,
                        running.start_ticks,
                        popen=running.popen,
                        timeout=STOP_TIMEOUT,
                        name=self.kind,
                    )
                finally:
                    if running.watchdog is not None:
                        running.watchdog.release()
            self._info = None
            if self._workdir is not None and self._owns_workdir and not self._keep_workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            elif self._workdir is not None:
                with contextlib.suppress(FileNotFoundError):
                    (self._workdir / STATE_FILE).unlink()

    def __enter__(self) -> InfoT:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> InfoT:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)
