"""Loopback networking: free ports, small JSON calls that never go through a proxy, readiness with a
deadline, the environment that keeps a server from reaching anything but 127.0.0.1, and the sentinel that
shows it did not try."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from letta_matrix_reference.live.errors import ServerStartError
from letta_matrix_reference.live.state import redacted_tail, tail_file

log = logging.getLogger("letta_matrix_reference.live.net")

LOOPBACK = "127.0.0.1"
#: Where every HTTP(S) client inside a server is pointed: nothing listens on the discard port
#: (binding it needs root), so any attempt to reach the internet fails fast and locally.
#: ``$LIVE_BLACKHOLE_PROXY`` overrides it (``live.smoke`` points it at a listener that records
#: every attempt, to prove there are none).
DEAD_PROXY = "http://127.0.0.1:9"

_PORT_CLASH_MARKERS = ("address already in use", "failed to listen on tcp port")


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
    delay = 0.05
    while True:
        rc = proc.poll()
        if rc is not None:
            full = tail_file(log_path, lines=400).lower()
            raise ServerStartError(
                f"{name} exited with code {rc} before it was ready; last lines of {log_path}:\n"
                f"{redacted_tail(log_path, hide)}",
                port_clash=any(marker in full for marker in _PORT_CLASH_MARKERS),
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServerStartError(
                f"{name} was not ready at {url} before the deadline; last lines of {log_path}:\n"
                f"{redacted_tail(log_path, hide)}"
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


class ProxySentinel:
    """A loopback listener that the servers' HTTP(S) proxy variables point at during the smoke
    check (via ``$LIVE_BLACKHOLE_PROXY``); it records the first line of every connection, i.e.
    every attempt a server makes to reach the internet, and answers nothing."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.5)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.attempts: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="proxy-sentinel", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    first = conn.recv(512).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError as exc:
                    first = f"<connection without a request line: {exc}>"
                self.attempts.append(first)
                log.warning("outbound attempt through the proxy: %s", first)

    def take(self) -> list[str]:
        seen, self.attempts = self.attempts, []
        return seen

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2.0)
