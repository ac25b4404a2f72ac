"""Processes by PID: start a server in its own session, tell whether a PID is still the process that was
started, stop it with its process group, read its memory.

A PID alone is not an identity (the kernel recycles them), so a process is named by its PID and its start
time in clock ticks since boot; :func:`proc_stat` is the one reader of ``/proc/PID/stat`` here, used for
start times, for existence, for the parent links :func:`rss_bytes` follows and for CPU time (the bench).
Standard library only: the watchdog imports this module from a server's virtualenv.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("letta_matrix_reference.live.process")

#: SIGTERM's grace period before SIGKILL.
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` this package uses."""

    state: str  # "R", "S", ...; "Z" (zombie) and "X" (dead) have exited
    ppid: int
    start_ticks: int
    cpu_ticks: int  # user and system time used so far

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ticks / os.sysconf("SC_CLK_TCK")

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X")


def proc_stat(pid: int) -> ProcStat | None:
    """``/proc/PID/stat``, or None if there is no such process (or no procfs)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and ")".
    fields = text[text.rfind(")") + 2 :].split()
    return ProcStat(
        state=fields[0],
        ppid=int(fields[1]),
        start_ticks=int(fields[19]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
    )


def proc_start_ticks(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is not running.

    Together with the PID it identifies one process: a recycled PID has another start time.
    """
    stat = proc_stat(pid)
    return None if stat is None or stat.exited else stat.start_ticks


def is_same_process(pid: int, start_ticks: int | None) -> bool:
    """True if ``pid`` is alive and, when ``start_ticks`` is known, is the process that had it."""
    if pid <= 1:
        return False
    ticks = proc_start_ticks(pid)
    if ticks is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no procfs: fall back to a signal-0 probe
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return start_ticks is None or ticks == start_ticks


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` plus its descendants, from /proc (None if unavailable)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat.ppid, []).append(int(entry.name))
    total = 0
    found = False
    todo = [pid]
    while todo:
        cur = todo.pop()
        try:
            # VmRSS, not stat's page count: the figures in live/README.md were measured with it.
            for line in Path(f"/proc/{cur}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    found = True
        except OSError:
            continue
        todo.extend(children.get(cur, []))
    return total if found else None


def signal_group(pid: int, sig: signal.Signals) -> bool:
    """Signal the process group led by ``pid`` (our servers are session leaders), else the PID."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_gone(
    pid: int, start_ticks: int | None, popen: subprocess.Popen[bytes] | None, timeout: float
) -> bool:
    if popen is not None:
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_same_process(pid, start_ticks):
            return True
        time.sleep(0.05)
    return not is_same_process(pid, start_ticks)


def stop_process(
    pid: int,
    start_ticks: int | None,
    *,
    popen: subprocess.Popen[bytes] | None = None,
    timeout: float = STOP_TIMEOUT,
    name: str = "server",
) -> bool:
    """Stop a process this package started: SIGTERM, wait ``timeout`` s, then SIGKILL.

    The signal goes to the process group the server leads (it was started in a new session),
    so helpers it spawned go too. Nothing is signalled unless ``pid`` still is the process
    that ``start_ticks`` identifies. Returns True if a process was stopped.
    """
    if popen is not None and popen.poll() is not None:
        if _group_exists(pid):  # the leader is gone; end helpers it left in its group
            signal_group(pid, signal.SIGKILL)
        return False
    if not is_same_process(pid, start_ticks):
        log.info("%s (pid %d) is not running; nothing to stop", name, pid)
        return False
    t0 = time.monotonic()
    signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, start_ticks, popen, timeout):
        log.warning("%s (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", name, pid, timeout)
        if is_same_process(pid, start_ticks) or popen is not None:
            signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, start_ticks, popen, 5.0)
    # helpers that outlived the leader share its process group; end them too
    if _group_exists(pid):
        signal_group(pid, signal.SIGKILL)
    log.info("stopped %s (pid %d) in %.2fs", name, pid, time.monotonic() - t0)
    return True


def start_process(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with stdin closed and stdout+stderr appended to ``log_path``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # logs may show secrets
    with os.fdopen(fd, "ab") as out:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=str(cwd),
            start_new_session=True,
            close_fds=True,
        )
