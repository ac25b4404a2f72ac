"""Smoke check of the real servers:
``python -m letta_matrix_reference.live.smoke [--only synapse|letta] [--rounds N]``.

Installs (timing a cold or cached install), starts and stops each server ``--rounds`` times
(timing start-to-ready, reading RSS), and on the first round exercises what a bridge needs:

- Synapse: the admin token works; ``register`` answers the UIA 401 and then 200 with
  ``m.login.dummy``; ``login`` with a password; ``whoami``; ``createRoom``; a burst of
  registrations without a 429; the async context manager; the CLI ``start``/``status``/``stop``.
- Letta: ``/v1/health/`` needs no auth, ``GET /v1/agents/`` needs the bearer token; three
  agents created offline; the list shows them; ``GET /v1/agents/{id}/messages`` answers a list;
  the CLI ``start``/``stop``.

The servers' proxy variables point at a local sentinel during the check: any attempt to reach
the internet is recorded and fails the check.

Progress goes to stderr; one JSON summary (the figures) goes to stdout. Exit status 1 on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from letta_matrix_reference.live import letta, synapse
from letta_matrix_reference.live.errors import LiveError
from letta_matrix_reference.live.net import ProxySentinel, http_request
from letta_matrix_reference.live.process import is_same_process, rss_bytes

log = logging.getLogger("letta_matrix_reference.live.smoke")


class SmokeFailure(AssertionError):
    pass


def check(condition: object, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def _mb(value: int | None) -> float | None:
    return round(value / 2**20, 1) if value is not None else None


def _timed_install(
    install: Callable[[Path | None], Path], cached: Path | None, cache_dir: Path | None
) -> dict[str, Any]:
    t0 = time.monotonic()
    python = install(cache_dir)
    first = time.monotonic() - t0
    t0 = time.monotonic()
    install(cache_dir)
    again = time.monotonic() - t0
    return {
        "python": str(python),
        "first_call_was_cached": cached is not None,
        "first_call_seconds": round(first, 2),
        "cached_call_seconds": round(again, 3),
    }


def _summarise(samples: list[float]) -> dict[str, float]:
    return {
        "min": round(min(samples), 2),
        "median": round(statistics.median(samples), 2),
        "max": round(max(samples), 2),
    }


# ------------------------------------------------------------------------------------------------
# Synapse
# ------------------------------------------------------------------------------------------------


def _synapse_api_checks(info: synapse.SynapseInfo) -> dict[str, Any]:
    url = info.url
    admin = {"Authorization": f"Bearer {info.admin_token}"}
    status, body = http_request("GET", f"{url}/_matrix/client/v3/account/whoami", headers=admin)
    check(status == 200 and body["user_id"] == info.admin_user_id, f"admin whoami: {status} {body}")
    status, body = http_request("GET", f"{url}/_synapse/admin/v1/server_version", headers=admin)
    check(status == 200 and "server_version" in body, f"admin server_version: {status} {body}")
    version = body["server_version"]
    status, body = http_request("GET", f"{url}/_synapse/admin/v2/users/{info.admin_user_id}", headers=admin)
    check(status == 200 and body.get("admin") is True, f"admin flag: {status} {body}")

    # register: UIA 401 first, then m.login.dummy
    reg = f"{url}/_matrix/client/v3/register"
    status, body = http_request("POST", reg, body={"username": "smoke_alice", "password": "pw-alice"})
    check(
        status == 401 and body["flows"] == [{"stages": ["m.login.dummy"]}], f"register UIA: {status} {body}"
    )
    session = body["session"]
    t0 = time.monotonic()
    status, body = http_request(
        "POST",
        reg,
        body={
            "username": "smoke_alice",
            "password": "pw-alice",
            "auth": {"type": "m.login.dummy", "session": session},
        },
    )
    register_ms = (time.monotonic() - t0) * 1000
    check(
        status == 200 and body["user_id"] == f"@smoke_alice:{info.server_name}", f"register: {status} {body}"
    )

    t0 = time.monotonic()
    status, body = http_request(
        "POST",
        f"{url}/_matrix/client/v3/login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "smoke_alice"},
            "password": "pw-alice",
        },
    )
    login_ms = (time.monotonic() - t0) * 1000
    check(status == 200 and "access_token" in body, f"login: {status} {body}")
    alice = {"Authorization": f"Bearer {body['access_token']}"}
    status, body = http_request("GET", f"{url}/_matrix/client/v3/account/whoami", headers=alice)
    check(status == 200 and body["user_id"] == f"@smoke_alice:{info.server_name}", f"whoami: {status} {body}")

    status, body = http_request(
        "POST",
        f"{url}/_matrix/client/v3/createRoom",
        headers=alice,
        body={"name": "smoke", "preset": "private_chat", "invite": [info.admin_user_id]},
    )
    check(status == 200 and str(body.get("room_id", "")).startswith("!"), f"createRoom: {status} {body}")
    room_id = body["room_id"]
    status, body = http_request(
        "PUT",
        f"{url}/_matrix/client/v3/rooms/{room_id}/send/m.room.message/txn1",
        headers=alice,
        body={"msgtype": "m.text", "body": "hello"},
    )
    check(status == 200 and "event_id" in body, f"send message: {status} {body}")

    # rate limits are raised: a burst of registrations from one IP gets no 429
    for i in range(8):
        status, body = http_request(
            "POST",
            reg,
            body={"username": f"smoke_burst_{i}", "password": "pw", "auth": {"type": "m.login.dummy"}},
        )
        check(status == 200, f"burst registration {i}: {status} {body}")
    return {
        "server_version": version,
        "register_ms": round(register_ms, 1),
        "login_ms": round(login_ms, 1),
        "room_id": room_id,
    }


async def _synapse_async_cm(cache_dir: Path | None) -> None:
    async with synapse.SynapseServer(cache_dir=cache_dir) as info:
        status, _ = await asyncio.to_thread(http_request, "GET", f"{info.url}/_matrix/client/versions")
        check(status == 200, f"async context manager: versions answered {status}")
    check(not is_same_process(info.pid, None), "async context manager left synapse running")


def _cli(module: str, *args: str, cache_dir: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", module, "-q", *args]
    if cache_dir is not None and args[0] in ("start", "install"):
        cmd += ["--cache-dir", str(cache_dir)]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    check(len(lines) == 1, f"{' '.join(args)}: expected one JSON line, got {proc.stdout!r} / {proc.stderr!r}")
    payload: dict[str, Any] = json.loads(lines[0])
    payload["_rc"] = proc.returncode
    return payload


def smoke_synapse(rounds: int, cache_dir: Path | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "install": _timed_install(synapse.ensure_installed, synapse.installed_python(cache_dir), cache_dir)
    }
    starts: list[float] = []
    stops: list[float] = []
    rss: list[int] = []
    for n in range(rounds):
        server = synapse.SynapseServer(cache_dir=cache_dir)
        t0 = time.monotonic()
        info = server.start()
        starts.append(time.monotonic() - t0)
        try:
            workdir = server.workdir
            check(workdir is not None and (workdir / "live-state.json").is_file(), "state file missing")
            check(info.url.startswith("http://127.0.0.1:"), f"url {info.url}")
            value = rss_bytes(info.pid)
            if value is not None:
                rss.append(value)
            if n == 0:
                result["api"] = _synapse_api_checks(info)
        finally:
            t0 = time.monotonic()
            server.stop()
            stops.append(time.monotonic() - t0)
        check(not is_same_process(info.pid, None), f"synapse pid {info.pid} still running after stop")
        check(workdir is None or not workdir.exists(), f"temp workdir {workdir} not removed")
        log.info("synapse round %d: ready in %.2fs", n + 1, starts[-1])
    asyncio.run(_synapse_async_cm(cache_dir))

    # a workdir that is reused keeps its database: the second start logs the admin in
    with tempfile.TemporaryDirectory(prefix="live-smoke-") as tmp:
        workdir = Path(tmp) / "hs"
        with synapse.SynapseServer(workdir, cache_dir=cache_dir) as first:
            pass
        with synapse.SynapseServer(workdir, cache_dir=cache_dir) as second:
            check(second.admin_user_id == first.admin_user_id, "reused workdir: another admin")
            check(second.admin_password == first.admin_password, "reused workdir: admin password changed")
            status, body = http_request(
                "GET",
                f"{second.url}/_matrix/client/v3/account/whoami",
                headers={"Authorization": f"Bearer {second.admin_token}"},
            )
            check(
                status == 200 and body["user_id"] == first.admin_user_id, f"reused workdir: {status} {body}"
            )
        check(workdir.is_dir() and (workdir / "homeserver.db").is_file(), "a given workdir must be kept")

    started = _cli("letta_matrix_reference.live.synapse", "start", cache_dir=cache_dir)
    check(started["_rc"] == 0 and started["url"].startswith("http://127.0.0.1:"), f"cli start: {started}")
    cli_status = _cli(
        "letta_matrix_reference.live.synapse", "status", "--workdir", started["workdir"], cache_dir=cache_dir
    )
    check(cli_status["running"] is True, f"cli status: {cli_status}")
    stopped = _cli(
        "letta_matrix_reference.live.synapse", "stop", "--workdir", started["workdir"], cache_dir=cache_dir
    )
    check(stopped["stopped"] is True and not Path(started["workdir"]).exists(), f"cli stop: {stopped}")
    check(not is_same_process(int(started["pid"]), None), "cli stop left synapse running")

    result.update(
        {
            "rounds": rounds,
            "start_to_ready_seconds": _summarise(starts),
            "stop_seconds": _summarise(stops),
            "rss_mb_after_start": _mb(max(rss)) if rss else None,
            "cli": "ok",
        }
    )
    return result


# ------------------------------------------------------------------------------------------------
# Letta
# ------------------------------------------------------------------------------------------------


async def _letta_api_checks(info: letta.LettaInfo) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
            async with session.get(f"{info.url}{path}", headers=headers, allow_redirects=False) as resp:
                text = await resp.text()
                return resp.status, (json.loads(text) if text else None)

        status, body = await get("/v1/health/")
        check(status == 200 and body["version"] == letta.LETTA_VERSION, f"health: {status} {body}")
        status, body = await get("/v1/agents/")
        check(status == 401, f"agents without token: {status} {body}")
        status, body = await get("/v1/agents/", {"Authorization": "Bearer wrong"})
        check(status == 401, f"agents with a wrong token: {status} {body}")
        status, body = await get("/v1/agents/", info.headers)
        check(status == 200 and body == [], f"agents (empty): {status} {body}")

        created: list[dict[str, object]] = []
        timings: list[float] = []
        for i in range(3):
            t0 = time.monotonic()
            created.append(await letta.create_agent(info, f"smoke-agent-{i}"))
            timings.append((time.monotonic() - t0) * 1000)
        ids = [str(a["id"]) for a in created]
        check(all(i.startswith("agent-") for i in ids), f"agent ids {ids}")
        status, body = await get("/v1/agents/", info.headers)
        check(status == 200 and {a["id"] for a in body} == set(ids), f"agents list: {status} {body}")
        status, body = await get(f"/v1/agents/{ids[0]}", info.headers)
        check(status == 200 and body["name"] == "smoke-agent-0", f"get agent: {status}")
        status, body = await get(f"/v1/agents/{ids[0]}/messages", info.headers)
        check(status == 200 and isinstance(body, list), f"messages: {status} {body}")
        n_messages = len(body)
    return {
        "agents_created": len(ids),
        "create_agent_ms": _summarise(timings),
        "initial_messages_per_agent": n_messages,
    }


def smoke_letta(rounds: int, cache_dir: Path | None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "install": _timed_install(letta.ensure_installed, letta.installed_python(cache_dir), cache_dir)
    }
    starts: list[float] = []
    stops: list[float] = []
    rss: list[int] = []
    for n in range(rounds):
        server = letta.LettaServer(cache_dir=cache_dir)
        t0 = time.monotonic()
        info = server.start()
        starts.append(time.monotonic() - t0)
        workdir = server.workdir
        try:
            value = rss_bytes(info.pid)
            if value is not None:
                rss.append(value)
            if n == 0:
                result["api"] = asyncio.run(_letta_api_checks(info))
                value = rss_bytes(info.pid)
                if value is not None:
                    rss.append(value)
        finally:
            t0 = time.monotonic()
            server.stop()
            stops.append(time.monotonic() - t0)
        check(not is_same_process(info.pid, None), f"letta pid {info.pid} still running after stop")
        check(workdir is None or not workdir.exists(), f"temp workdir {workdir} not removed")
        log.info("letta round %d: ready in %.2fs", n + 1, starts[-1])
    started = _cli("letta_matrix_reference.live.letta", "start", cache_dir=cache_dir)
    check(started["_rc"] == 0 and started["url"].startswith("http://127.0.0.1:"), f"cli start: {started}")
    status, body = http_request(
        "GET", f"{started['url']}/v1/agents/", headers={"Authorization": f"Bearer {started['token']}"}
    )
    check(status == 200 and isinstance(body, list), f"agents via cli-started server: {status} {body}")
    stopped = _cli(
        "letta_matrix_reference.live.letta", "stop", "--workdir", started["workdir"], cache_dir=cache_dir
    )
    check(stopped["stopped"] is True and not Path(started["workdir"]).exists(), f"cli stop: {stopped}")
    check(not is_same_process(int(started["pid"]), None), "cli stop left letta running")

    result.update(
        {
            "rounds": rounds,
            "start_to_ready_seconds": _summarise(starts),
            "stop_seconds": _summarise(stops),
            "rss_mb_max": _mb(max(rss)) if rss else None,
            "cli": "ok",
        }
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m letta_matrix_reference.live.smoke", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", choices=("synapse", "letta"), default=None)
    parser.add_argument("--rounds", type=int, default=3, help="start/stop cycles per server")
    parser.add_argument("--cache-dir", type=Path, default=None)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    summary: dict[str, Any] = {}
    ok = True
    sentinel = ProxySentinel()
    os.environ["LIVE_BLACKHOLE_PROXY"] = sentinel.url
    try:
        for name, fn in (("synapse", smoke_synapse), ("letta", smoke_letta)):
            if ns.only not in (None, name):
                continue
            t0 = time.monotonic()
            try:
                summary[name] = fn(max(1, ns.rounds), ns.cache_dir)
                attempts = sentinel.take()
                summary[name]["outbound_attempts"] = attempts
                check(not attempts, f"{name} tried to reach the internet: {attempts}")
                summary[name]["ok"] = True
            except (SmokeFailure, LiveError, OSError, KeyError, TypeError, ValueError) as exc:
                log.exception("%s smoke check failed", name)
                summary[name] = {**summary.get(name, {}), "ok": False, "error": str(exc)[-2000:]}
                ok = False
            summary[name]["total_seconds"] = round(time.monotonic() - t0, 1)
    finally:
        os.environ.pop("LIVE_BLACKHOLE_PROXY", None)
        sentinel.close()
    sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    passed = sum(1 for v in summary.values() if v.get("ok"))
    sys.stdout.write(f"smoke: {passed} passed, {len(summary) - passed} failed\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
