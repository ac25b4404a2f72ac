"""Shared helpers for running real servers on 127.0.0.1.

Everything here is stdlib only:

- cached virtualenvs keyed by a hash of their pin list (:func:`ensure_venv`), safe when two
  processes race (an ``flock`` lock file next to the venv);
- free loopback ports (:func:`free_port`);
- readiness polling with a deadline that fails with the tail of the server log
  (:func:`wait_until_ready`);
- starting and stopping processes *by PID* (SIGTERM, then SIGKILL after a timeout), guarded
  against PID reuse by the kernel's process start time (:func:`stop_process`);
- an ``atexit`` hook that stops every server this process started and did not stop, and a
  small watchdog process per server that stops it even if this process is SIGKILLed;
- :class:`ManagedServer`, the lifecycle shared by :mod:`live.synapse` and :mod:`live.letta`.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

log = logging.getLogger("letta_matrix_reference.live")

LOOPBACK = "127.0.0.1"
#: Where every HTTP(S) client inside a server is pointed: nothing listens on the discard port
#: (binding it needs root), so any attempt to reach the internet fails fast and locally.
#: ``$LIVE_BLACKHOLE_PROXY`` overrides it (``live.smoke`` points it at a listener that records
#: every attempt, to prove there are none).
DEAD_PROXY = "http://127.0.0.1:9"
STATE_FILE = "live-state.json"
INSTALL_MARKER = ".live-installed.json"
STOP_TIMEOUT = 10.0


class LiveError(RuntimeError):
    """Base class for every error raised by :mod:`live`."""


class InstallError(LiveError):
    """Creating or populating a cached virtualenv failed."""


class ServerStartError(LiveError):
    """A server exited early or did not become ready before its deadline."""

    def __init__(self, message: str, *, port_clash: bool = False) -> None:
        super().__init__(message)
        #: True if the server exited because its port was taken (worth a retry on another port)
        self.port_clash = port_clash


_PORT_CLASH_MARKERS = ("address already in use", "failed to listen on tcp port")


# --------------------------------------------------------------------------------------------
# paths, hashing, secrets
# --------------------------------------------------------------------------------------------


def default_cache_dir(cache_dir: Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$LIVE_CACHE_DIR``, else ``$XDG_CACHE_HOME`` (``~/.cache``)
    ``/letta-matrix-contracts/live``: outside the checkout, so every clone (CI clones afresh each run) shares
    the servers' virtualenvs instead of spending minutes installing Letta again."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get("LIVE_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "letta-matrix-contracts" / "live"


def python_tag() -> str:
    """Identifies the interpreter the venvs are built from (part of the cache key): a venv links
    to its base interpreter, so another interpreter (or the same version elsewhere) gets its own."""
    impl = sys.implementation.name
    base = os.path.realpath(sys.base_prefix)
    return f"{impl}-{sys.version_info.major}.{sys.version_info.minor}-{platform.machine()}-{base}"


def pins_digest(*parts: str) -> str:
    """A stable hash of pin lists: comments, blank lines and line order do not matter."""
    lines: list[str] = []
    for part in parts:
        for raw in part.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    material = "\n".join([python_tag(), *sorted(lines)])
    return hashlib.sha256(material.encode()).hexdigest()


def new_secret(nbytes: int = 24) -> str:
    # Hex, not urlsafe base64: a secret starting with "-" reads as an option on a command line.
    return secrets.token_hex(nbytes)


def redact(secret: str) -> str:
    """Enough of a secret to recognise it in a log, never the whole of it."""
    if len(secret) <= 8:
        return "***"
    return f"{secret[:4]}...({len(secret)} chars)"


def tail_file(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a (log) file, or a note that there is none."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError as exc:
        return f"<no log at {path}: {exc.strerror}>"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# locking and cached virtualenvs
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), waiting at most ``timeout`` s.

    The lock is released by the kernel if the holder dies, so a crashed install never
    blocks the next one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LiveError(f"timed out after {timeout:.0f}s waiting for lock {path}") from None
                if not announced:
                    log.info("waiting for lock %s (another process is installing)", path)
                    announced = True
                time.sleep(0.25)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _run_logged(
    cmd: Sequence[str],
    log_path: Path,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str,
) -> None:
    """Run ``cmd`` to completion, appending its output to ``log_path``; raise InstallError on failure."""
    with log_path.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise InstallError(
                f"{what} timed out after {timeout:.0f}s; log {log_path}:\n{tail_file(log_path)}"
            ) from None
        except BaseException:  # e.g. KeyboardInterrupt: do not leave pip running on its own
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    if rc != 0:
        raise InstallError(f"{what} failed with exit code {rc}; log {log_path}:\n{tail_file(log_path)}")


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_location(name: str, key_material: str, cache_dir: Path | None = None) -> Path:
    """Where the venv for ``name`` with these pins lives (it may not exist yet)."""
    return default_cache_dir(cache_dir) / f"{name}-{pins_digest(key_material)[:16]}"


def installed_python(name: str, key_material: str, cache_dir: Path | None = None) -> Path | None:
    """The python of a complete cached venv, or None if it has not been (fully) installed."""
    venv = venv_location(name, key_material, cache_dir)
    python = venv_python(venv)
    return python if (venv / INSTALL_MARKER).is_file() and python.exists() else None


def pinned_lines(text: str) -> list[str]:
    """The requirement lines of a pip requirements/constraints text (comments and options dropped)."""
    out: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(line)
    return out


_PIP = ("-m", "pip", "--disable-pip-version-check", "--no-input")


def _prefetch_wheels(
    python: Path, specs: Sequence[str], wheelhouse: Path, install_log: Path, *, deadline: float, jobs: int
) -> None:
    """``pip wheel --no-deps`` every pinned spec into ``wheelhouse``, ``jobs`` pip processes at a time.

    Installing a few hundred pinned packages one index lookup after another is latency-bound;
    fetching them concurrently and then installing with ``--no-index`` is several times faster.
    Sdist-only pins are built into wheels here.
    """
    wheelhouse.mkdir(parents=True, exist_ok=True)
    chunks = [list(specs[i::jobs]) for i in range(min(jobs, len(specs)))]

    def fetch(index: int, chunk: list[str]) -> None:
        part_log = install_log.with_suffix(f".prefetch{index}.log")
        try:
            _run_logged(
                [
                    str(python),
                    *_PIP,
                    "wheel",
                    "--no-deps",
                    "--progress-bar",
                    "off",
                    "-w",
                    str(wheelhouse),
                    *chunk,
                ],
                part_log,
                timeout=deadline - time.monotonic(),
                what=f"prefetch batch {index}",
            )
        finally:
            with install_log.open("ab") as out, contextlib.suppress(OSError):
                out.write(part_log.read_bytes())
                part_log.unlink()

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(chunks) or 1) as pool:
        futures = [pool.submit(fetch, i, chunk) for i, chunk in enumerate(chunks)]
        errors = [f.exception() for f in futures]
    log.info("prefetched %d pinned packages in %.1fs", len(specs), time.monotonic() - t0)
    failed = [e for e in errors if e is not None]
    if failed:
        raise failed[0]


def ensure_venv(
    name: str,
    *,
    pip_args: Sequence[str],
    key_material: str,
    cache_dir: Path | None = None,
    prefetch: Sequence[str] = (),
    jobs: int | None = None,
    check_cmd: Sequence[str] = (),
    check_env: Mapping[str, str] | None = None,
    timeout: float = 1800.0,
) -> Path:
    """Return the python of a cached venv ``<cache>/<name>-<hash>`` with ``pip install *pip_args`` done.

    The venv is created with ``sys.executable -m venv``. It is reused when its marker file
    exists; a half-built venv (no marker) is removed and rebuilt. Two processes that race
    serialise on ``<cache>/<name>-<hash>.lock``.

    ``prefetch`` (fully pinned specs, normally the whole pin list) are fetched by ``jobs``
    concurrent pip processes (default ``$LIVE_PIP_JOBS`` or 8; 0 turns this off) into a
    temporary wheelhouse first, and the install then runs with ``--no-index`` from it; if that
    fails for any reason the plain online ``pip install *pip_args`` runs instead.
    ``check_cmd`` (run with the venv's python prepended) must succeed before the venv is
    marked complete. Everything is appended to ``<cache>/<name>-<hash>.install.log``.
    """
    if jobs is None:
        jobs = int(os.environ.get("LIVE_PIP_JOBS", "8") or "8")
    venv = venv_location(name, key_material, cache_dir)
    cache, digest = venv.parent, venv.name.rsplit("-", 1)[1]
    cache.mkdir(parents=True, exist_ok=True)
    python = venv_python(venv)
    marker = venv / INSTALL_MARKER
    if marker.is_file() and python.exists():
        log.debug("%s venv cached at %s", name, venv)
        return python
    with file_lock(cache / f"{name}-{digest}.lock", timeout=timeout):
        if marker.is_file() and python.exists():
            return python
        deadline = time.monotonic() + timeout
        if venv.exists():
            log.warning("removing incomplete %s venv %s", name, venv)
            shutil.rmtree(venv)
        install_log = cache / f"{name}-{digest}.install.log"
        install_log.write_bytes(b"")
        log.info("installing %s into %s (log %s)", name, venv, install_log)
        started = time.monotonic()
        method = "pip"
        try:
            _run_logged(
                [sys.executable, "-m", "venv", str(venv)],
                install_log,
                timeout=deadline - time.monotonic(),
                what=f"creating the {name} venv",
            )
            done = False
            if prefetch and jobs > 0:
                wheelhouse = cache / f"{name}-{digest}.wheels"
                try:
                    _prefetch_wheels(python, prefetch, wheelhouse, install_log, deadline=deadline, jobs=jobs)
                    _run_logged(
                        [
                            str(python),
                            *_PIP,
                            "install",
                            "--no-index",
                            "--find-links",
                            str(wheelhouse),
                            *pip_args,
                        ],
                        install_log,
                        timeout=deadline - time.monotonic(),
                        what=f"offline pip install for {name}",
                    )
                    done, method = True, f"prefetch x{jobs} + pip --no-index"
                except InstallError as exc:
                    log.warning(
                        "%s: parallel prefetch did not work (%s); falling back to a plain pip install",
                        name,
                        str(exc).splitlines()[0],
                    )
                finally:
                    shutil.rmtree(wheelhouse, ignore_errors=True)
            if not done:
                _run_logged(
                    [str(python), *_PIP, "install", *pip_args],
                    install_log,
                    timeout=deadline - time.monotonic(),
                    what=f"pip install for {name}",
                )
            if check_cmd:
                with tempfile.TemporaryDirectory(prefix=f"live-{name}-check-") as scratch:
                    _run_logged(  # in a scratch dir: importing a server may drop files into its cwd
                        [str(python), *check_cmd],
                        install_log,
                        timeout=deadline - time.monotonic(),
                        env=check_env,
                        cwd=Path(scratch),
                        what=f"import check for {name}",
                    )
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        seconds = time.monotonic() - started
        payload = {
            "name": name,
            "digest": digest,
            "pip_args": list(pip_args),
            "method": method,
            "python": python_tag(),
            "seconds": round(seconds, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(marker)
        log.info("installed %s in %.1fs (%s)", name, seconds, method)
    return python


# --------------------------------------------------------------------------------------------
# ports and HTTP
# --------------------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (the caller should bind it soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# urllib honours *_proxy environment variables; loopback traffic must never go through one.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    method: str,
    url: str,
    *,
    body: object | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """A small JSON-over-HTTP call (no proxies). Returns ``(status, decoded JSON or text or None)``."""
    data = None
    hdrs = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status: int = resp.status
            raw: bytes = resp.read()
    except urllib.error.HTTPError as exc:
        status = exc.code
        raw = exc.read()
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", errors="replace")


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET url``, or None if nothing answered."""
    try:
        status, _ = http_request("GET", url, timeout=timeout)
    except (OSError, http.client.HTTPException):  # URLError is an OSError
        return None
    return status


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


def proc_start_ticks(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it does not exist.

    Together with the PID it identifies one process: a recycled PID has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):  # zombie or dead: already exited
        return None
    return int(fields[19])


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
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total = 0
    found = False
    todo = [pid]
    while todo:
        cur = todo.pop()
        try:
            for line in Path(f"/proc/{cur}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    found = True
        except OSError:
            continue
        todo.extend(children.get(cur, []))
    return total if found else None


def _signal_group(pid: int, sig: signal.Signals) -> bool:
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
            _signal_group(pid, signal.SIGKILL)
        return False
    if not is_same_process(pid, start_ticks):
        log.info("%s (pid %d) is not running; nothing to stop", name, pid)
        return False
    t0 = time.monotonic()
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, start_ticks, popen, timeout):
        log.warning("%s (pid %d) ignored SIGTERM for %.0fs; sending SIGKILL", name, pid, timeout)
        if is_same_process(pid, start_ticks) or popen is not None:
            _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, start_ticks, popen, 5.0)
    # helpers that outlived the leader share its process group; end them too
    if _group_exists(pid):
        _signal_group(pid, signal.SIGKILL)
    log.info("stopped %s (pid %d) in %.2fs", name, pid, time.monotonic() - t0)
    return True


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
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


def wait_until_ready(
    url: str,
    *,
    proc: subprocess.Popen[bytes],
    deadline: float,
    log_path: Path,
    name: str,
    hide: Sequence[str] = (),
) -> None:
    """Poll ``GET url`` until it answers 200. Raise ServerStartError (with the log's tail, the
    strings in ``hide`` redacted) if the process exits or ``deadline`` (a ``time.monotonic()``
    value) passes first."""

    def tail() -> str:
        text = tail_file(log_path)
        for secret in hide:
            if secret:
                text = text.replace(secret, redact(secret))
        return text

    delay = 0.05
    while True:
        rc = proc.poll()
        if rc is not None:
            full = tail_file(log_path, lines=400).lower()
            raise ServerStartError(
                f"{name} exited with code {rc} before it was ready; last lines of {log_path}:\n{tail()}",
                port_clash=any(marker in full for marker in _PORT_CLASH_MARKERS),
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerStartError(
                f"{name} was not ready at {url} before the deadline; last lines of {log_path}:\n{tail()}"
            )
        if http_status(url, timeout=min(2.0, max(0.1, remaining))) == 200:
            return
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.5)


def server_env(strip_prefixes: Sequence[str] = (), extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a server: ours, minus things that would change what it does or let it
    reach the internet, plus a dead proxy for every HTTP client and ``extra``."""
    drop_suffixes = ("_API_KEY", "_API_TOKEN", "_API_BASE", "_BASE_URL")
    drop_exact = {
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "__PYVENV_LAUNCHER__",
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop_exact
        and not k.upper().endswith(drop_suffixes)
        and not any(k.upper().startswith(p) for p in strip_prefixes)
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    proxy = os.environ.get("LIVE_BLACKHOLE_PROXY") or DEAD_PROXY
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[var] = env[var.lower()] = proxy
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------------------------
# atexit: never leak a server
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# watchdog: never leak a server, even if this process is killed with SIGKILL
# --------------------------------------------------------------------------------------------

# Runs in a small process of its own (in its own session, deaf to SIGINT/SIGHUP). It blocks on
# the read end of a pipe whose only write end this process holds; EOF means this process closed
# it (after stopping the server itself) or died. Then, if the server is still the process that
# was started (PID + start time), it gets SIGTERM and, after the grace period, SIGKILL, and its
# temporary workdir (if any) is removed.
_WATCHDOG_SOURCE = r"""
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
fd, pid, ticks, grace, workdir = sys.argv[1:6]
fd, pid, grace = int(fd), int(pid), float(grace)
while True:
    try:
        if not os.read(fd, 64):
            break
    except InterruptedError:
        continue
    except OSError:
        break
def alive():
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0] not in ("Z", "X") and (not ticks or fields[19] == ticks)
def kill(sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
if alive():
    kill(signal.SIGTERM)
    end = time.monotonic() + grace
    while alive() and time.monotonic() < end:
        time.sleep(0.1)
    if alive():
        kill(signal.SIGKILL)
    if workdir:
        import shutil
        time.sleep(0.2)
        shutil.rmtree(workdir, ignore_errors=True)
"""


class Watchdog:
    """Stops a server if the process that started it dies without stopping it (see above)."""

    def __init__(
        self,
        python: Path,
        pid: int,
        start_ticks: int | None,
        grace: float = STOP_TIMEOUT,
        remove_dir: Path | None = None,
    ) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    str(python),
                    "-I",
                    "-c",
                    _WATCHDOG_SOURCE,
                    str(read_end),
                    str(pid),
                    str(start_ticks or ""),
                    str(grace),
                    str(remove_dir or ""),
                ],
                pass_fds=(read_end,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def release(self, timeout: float = 5.0) -> None:
        """Close our end of the pipe (the server must already be stopped) and reap the watchdog."""
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# --------------------------------------------------------------------------------------------
# state files (for the CLI: ``start`` in one process, ``stop`` in another)
# --------------------------------------------------------------------------------------------


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds credentials or keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def write_state(workdir: Path, state: Mapping[str, object]) -> Path:
    path = workdir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    write_private(tmp, json.dumps(dict(state), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_state(workdir: Path) -> dict[str, Any]:
    path = workdir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LiveError(f"no {STATE_FILE} in {workdir}: was a server started there?") from None
    if not isinstance(data, dict):
        raise LiveError(f"{path} is not a JSON object")
    return data


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


# --------------------------------------------------------------------------------------------
# the server lifecycle shared by Synapse and Letta
# --------------------------------------------------------------------------------------------

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
