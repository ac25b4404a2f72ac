"""Cached virtualenvs for the servers, keyed by a hash of their pin list and the base interpreter.

:func:`ensure_venv` creates ``<cache>/<name>-<hash>`` once and reuses it; two processes that race serialise
on an ``flock`` lock file next to it, and an interrupted install (no marker file) is redone. The pins are
fetched by concurrent ``pip wheel`` processes first, because a few hundred index lookups one after another
are what makes a cold install slow.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from letta_matrix_reference.live.errors import InstallError, LiveError
from letta_matrix_reference.live.process import signal_group
from letta_matrix_reference.live.state import tail_file

log = logging.getLogger("letta_matrix_reference.live.venv")

INSTALL_MARKER = ".live-installed.json"


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


def run_logged(
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
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            raise InstallError(
                f"{what} timed out after {timeout:.0f}s; log {log_path}:\n{tail_file(log_path)}"
            ) from None
        except BaseException:  # e.g. KeyboardInterrupt: do not leave pip running on its own
            signal_group(proc.pid, signal.SIGKILL)
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
            run_logged(
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
            run_logged(
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
                    run_logged(
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
                run_logged(
                    [str(python), *_PIP, "install", *pip_args],
                    install_log,
                    timeout=deadline - time.monotonic(),
                    what=f"pip install for {name}",
                )
            if check_cmd:
                with tempfile.TemporaryDirectory(prefix=f"live-{name}-check-") as scratch:
                    run_logged(  # in a scratch dir: importing a server may drop files into its cwd
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
