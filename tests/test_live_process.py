"""The live servers' process control, on a `sleep` standing in for a server: a process is its PID and start
time, and the watchdog, run by an interpreter without this package (as a server's virtualenv is), stops it
when the process that started it goes away, and only if that PID is still the process it was given."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from letta_matrix_reference.live.process import is_same_process, proc_start_ticks, proc_stat, rss_bytes
from letta_matrix_reference.live.watchdog import Watchdog

# The base interpreter: this package is installed into the project's virtualenv only.
BASE_PYTHON = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def server() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def test_a_process_is_its_pid_and_start_time(server: subprocess.Popen[bytes]) -> None:
    stat = proc_stat(server.pid)
    assert stat is not None
    assert (stat.ppid, stat.exited) == (os.getpid(), False)
    assert is_same_process(server.pid, stat.start_ticks)
    assert is_same_process(server.pid, None)
    assert not is_same_process(server.pid, stat.start_ticks + 1)  # the PID, recycled
    assert (rss_bytes(server.pid) or 0) > 0
    server.kill()
    deadline = time.monotonic() + 10
    while proc_start_ticks(server.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc_start_ticks(server.pid) is None  # a zombie, not yet reaped, has exited
    assert not is_same_process(server.pid, stat.start_ticks)


def test_the_watchdog_stops_a_server_its_starter_left_behind(
    server: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    watchdog = Watchdog(BASE_PYTHON, server.pid, proc_start_ticks(server.pid), grace=5.0, remove_dir=workdir)
    watchdog.release(timeout=30)  # the pipe closed with the server running: what a starter's death looks like
    assert server.wait(timeout=5) == -signal.SIGTERM
    assert not workdir.exists()


def test_the_watchdog_leaves_a_recycled_pid_alone(server: subprocess.Popen[bytes], tmp_path: Path) -> None:
    ticks = proc_start_ticks(server.pid)
    assert ticks is not None
    Watchdog(BASE_PYTHON, server.pid, ticks + 1, grace=5.0, remove_dir=tmp_path).release(timeout=30)
    assert server.poll() is None
    assert tmp_path.exists()
