"""A real `redis-server` (Debian's package; `make fuzz` installs it when missing) for the shard tests: on a
free loopback port, in a private directory, without persistence, stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from letta_matrix_reference.live.net import free_port

READY = "Ready to accept connections"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


@contextmanager
def running(attempts: int = 3) -> Iterator[str]:
    """redis://127.0.0.1:PORT of a server that runs until the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no redis-server here (make fuzz installs it: apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="contracts-redis-") as directory:
        for _ in range(attempts):
            # redis-server binds by number (its port 0 means no TCP): a race can take this one first, and
            # the next attempt tries another.
            port = free_port()
            process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory,
                 "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            ready = threading.Event()
            log: list[str] = []
            threading.Thread(target=_read, args=(process, ready, log), daemon=True).start()
            ready.wait(START_TIMEOUT)
            if process.poll() is None and any(READY in line for line in log):
                try:
                    yield f"redis://127.0.0.1:{port}"
                finally:
                    _stop(process)
                return
            _stop(process)
        raise RuntimeError("redis-server did not start:\n" + "".join(log[-20:]))


def _read(process: subprocess.Popen[str], ready: threading.Event, log: list[str]) -> None:
    """Keep its output (a full pipe would stall it); say when it is ready or gone."""
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
        if READY in line:
            ready.set()
    ready.set()  # it exited


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
