"""The load: wrk (C, event-driven, with a Lua script for the request mix). A load generator written in
Python would spend as much CPU per request as the servers it measures and, on two cores, set the ceiling
itself; wrk needs a fraction of a core for tens of thousands of requests a second.

Before a run, two users and a room are made through the server's own API (the user-interactive
registration dance a client does), so every request of the mix is one the server accepts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

SCRIPT = Path(__file__).resolve().parent / "matrix_mixed.lua"
PASSWORD = "bench password"


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors_status: int
    errors_socket: int
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "per_second": round(self.per_second, 1)}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    request = Request(f"{base}/_matrix/client/v3{path}", data=data, method=method, headers=headers)
    try:
        with urlopen(request, timeout=30) as answer:
            return json.load(answer)
    except HTTPError as error:
        found = json.load(error)
        if error.code != 401 or "session" not in found:
            raise RuntimeError(f"{method} {path}: {error.code} {found}") from None
        return found


def register(base: str, username: str) -> str:
    """A new user's access token, by the m.login.dummy registration flow."""
    first = _call(base, "POST", "/register", {"username": username, "password": PASSWORD})
    if "access_token" in first:
        return str(first["access_token"])
    auth = {"type": "m.login.dummy", "session": first["session"]}
    done = _call(base, "POST", "/register", {"username": username, "password": PASSWORD, "auth": auth})
    return str(done["access_token"])


def prepare(base: str, *, stateful: bool = True) -> dict[str, str]:
    """The environment the Lua mix reads: a user with one room, another user who creates rooms. A server
    that keeps no state (the bare app, Prism) takes any well-formed values."""
    user = f"bench{uuid.uuid4().hex[:8]}"
    if not stateful:
        return {
            "BENCH_USER": user,
            "BENCH_PASSWORD": PASSWORD,
            "BENCH_TOKEN": "syt_bench",
            "BENCH_CREATOR_TOKEN": "syt_bench_creator",
            "BENCH_ROOM": "!bench:matrix.test",
        }
    token = register(base, user)
    creator = register(base, f"{user}c")
    room = _call(base, "POST", "/createRoom", {"preset": "private_chat"}, token)["room_id"]
    # The mix reads this state event from its first request on; it must exist before the first write.
    _call(base, "PUT", f"/rooms/{quote(room)}/state/org.example.bench/key", {"value": "initial"}, token)
    return {
        "BENCH_USER": user,
        "BENCH_PASSWORD": PASSWORD,
        "BENCH_TOKEN": token,
        "BENCH_CREATOR_TOKEN": creator,
        "BENCH_ROOM": str(room),
    }


def run_wrk(
    base: str, variables: dict[str, str], *, seconds: float, connections: int, mix: str = "mixed"
) -> LoadResult:
    """One wrk run (one thread: the other core is the server's) of the Lua mix against `base`."""
    # A generous timeout: a slow answer is a latency to report, not a request to drop.
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--timeout",
        "30s",
        "-s",
        str(SCRIPT),
        base,
    ]
    env = {**os.environ, **variables, "BENCH_MIX": mix}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON "))
    figures = json.loads(line.removeprefix("BENCH_JSON "))
    return LoadResult(
        requests=figures["requests"],
        seconds=figures["seconds"],
        errors_status=figures["errors_status"],
        errors_socket=figures["errors_socket"],
        p50_ms=figures["p50_ms"],
        p99_ms=figures["p99_ms"],
    )
