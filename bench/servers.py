"""The servers the bench compares, each in its own process on 127.0.0.1, started and stopped by PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from letta_matrix_reference.live.net import free_port, http_status
from letta_matrix_reference.live.process import rss_bytes, stop_process
from mockgen.cli import ready_urls
from mockgen.world import DEFAULT_USERS, MockConfig

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PRISM = ROOT / ".cache" / "prism" / "node_modules" / ".bin" / "prism"
# Our mock's uvicorn settings (mockgen.server), so the bare app's figure is the same server's ceiling.
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
                 "--no-server-header", "--no-date-header", "--timeout-keep-alive", "30"]  # fmt: skip
# Bytecode caching on: this machine sets PYTHONDONTWRITEBYTECODE, which would make every start compile.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


@dataclass
class Running:
    name: str
    url: str  # the Matrix (or Matrix-like) base URL
    pid: int
    letta_url: str | None = None
    admin: tuple[str, str] | None = None  # a server admin's localpart and password, when known
    server_name: str = ""
    stateful: bool = True  # False: answers from fixed examples, so any token and room will do

    @property
    def rss(self) -> int | None:
        return rss_bytes(self.pid)


def wait_for(url: str, deadline: float) -> None:
    while http_status(url) is None:  # answering at all, with any status, is ready
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in time")
        time.sleep(0.02)


def _start(
    command: list[str], *, stdout: int | None = None, stderr: int | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """A server in its own session, so that stopping it (`_stop`) ends whatever it spawned too."""
    return subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=cwd, env=ENV, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # No start time to compare: the unreaped child keeps its PID from being reused.
    stop_process(process.pid, None, popen=process, timeout=10, name=str(process.args))


@contextmanager
def mock(*, validate: bool = True, agents: int = 0) -> Iterator[Running]:
    """`mockgen serve` (both services); yields once both answer."""
    command = [str(VENV_BIN / "mockgen"), "serve", "--letta-port", "0", "--matrix-port", "0"]
    command += ["--agents", str(agents)] + ([] if validate else ["--no-validate"])
    process = _start(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        urls = ready_urls(process)
        name = "mock" if validate else "mock (no validation)"
        admin = (str(DEFAULT_USERS[0]["username"]), str(DEFAULT_USERS[0]["password"]))
        yield Running(
            name,
            urls["matrix"],
            process.pid,
            urls["letta"],
            admin=admin,
            server_name=MockConfig().server_name,
        )
    finally:
        _stop(process)


@contextmanager
def hello() -> Iterator[Running]:
    port = free_port()
    command = [str(VENV_BIN / "uvicorn"), "bench.hello:app", "--host", "127.0.0.1", "--port", str(port)]
    process = _start([*command, *UVICORN_FLAGS], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url, time.monotonic() + 30)
        yield Running("bare ASGI", url, process.pid, stateful=False)
    finally:
        _stop(process)


def prism_installed() -> bool:
    return PRISM.exists() and shutil.which("node") is not None


@contextmanager
def prism() -> Iterator[Running]:
    """Stoplight Prism mocking our own Matrix spec (static examples, request validation on)."""
    port = free_port()
    command = [str(PRISM), "mock", str(ROOT / "specs" / "matrix.yaml"), "-h", "127.0.0.1", "-p", str(port)]
    process = _start([*command, "-v", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/_matrix/client/versions", time.monotonic() + 60)
        yield Running("Prism", url, process.pid, stateful=False)
    finally:
        _stop(process)


@contextmanager
def synapse() -> Iterator[Running]:
    """A real Synapse from `live/` (installed into its cached virtualenv on first use)."""
    from letta_matrix_reference.live.synapse import SynapseServer

    with SynapseServer() as info:
        admin = info.admin_user_id.split(":", 1)[0].lstrip("@")
        yield Running(
            "Synapse", info.url, info.pid, admin=(admin, info.admin_password), server_name=info.server_name
        )
