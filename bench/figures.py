"""The figures other than throughput: the bridge's sync, fuzz examples per second, start-up and reset
times, memory over 100,000 requests, and the wall time of `make test`."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load, servers
from contracts.harness.fuzz.parallel import fuzz_parallel
from contracts.harness.fuzz.runner import fuzz
from contracts.harness.fuzz.target import load_target
from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.sync import Bridge, SyncReport
from mockgen.server import LOOP_FACTORY
from mockgen.world import DEFAULT_LETTA_TOKEN, MockConfig, World


async def _sync(config: BridgeConfig) -> tuple[float, SyncReport]:
    started = time.perf_counter()
    async with Bridge(config) as bridge:
        report = await bridge.sync_once()
    return time.perf_counter() - started, report


def bridge_sync(
    letta: servers.Running, matrix: servers.Running, agents: int, concurrency: int
) -> dict[str, Any]:
    """A first sync of `agents` Letta agents into `matrix` (from nothing), then a second, no-op one."""
    assert letta.letta_url is not None
    assert matrix.admin is not None
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as workdir:
        config = BridgeConfig(
            letta_url=letta.letta_url,
            letta_token=DEFAULT_LETTA_TOKEN,
            matrix_url=matrix.url,
            server_name=matrix.server_name,
            admin_user=matrix.admin[0],
            admin_password=matrix.admin[1],
            bot_user="bench-bridge-bot",
            bot_password="bench bridge bot password",
            data_dir=Path(workdir),
            concurrency=concurrency,
        )
        with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
            first_seconds, first = runner.run(_sync(config))
            second_seconds, second = runner.run(_sync(config))
    if not (first.ok and second.ok and first.rooms_created == agents):
        raise RuntimeError(
            f"bridge sync against {matrix.name} failed: {first.summary()} / {second.summary()}"
        )
    return {
        "against": matrix.name,
        "agents": agents,
        "concurrency": concurrency,
        "first_sync_s": round(first_seconds, 2),
        "seconds_per_agent": round(first_seconds / agents, 4),
        "second_sync_s": round(second_seconds, 2),
    }


def fuzz_throughput(examples: int) -> dict[str, Any]:
    """Random examples (no sweep) end to end through HTTP: one process, then two worker processes."""
    figures: dict[str, Any] = {}
    for label, target in (
        ("bridge", "letta_matrix_reference.bridge.target:fuzz_sync"),
        ("trivial", "tests.fuzz_targets:lists_agents"),
    ):
        result = fuzz(load_target(target), examples=examples, seed=1, progress=False, sweep=False)
        if result.failure is not None:
            raise RuntimeError(f"fuzzing {target} failed: {result.failure.problems}")
        figures[f"{label}_1_worker"] = round(result.examples_per_second, 1)
    parallel = fuzz_parallel(
        "letta_matrix_reference.bridge.target:fuzz_sync",
        examples=2 * examples,
        workers=2,
        seed=1,
        time_bound=20.0,
        progress=False,
        sweep=False,
    )  # fmt: skip
    figures["bridge_2_workers"] = round(parallel.examples_per_second, 1)
    return figures


_BUILD = """
import json, time
started = time.perf_counter()
from contracts.validation import validator_for
from mockgen.app import build_app
from mockgen.world import World
imported = time.perf_counter()
world = World()
build_app("letta", world), build_app("matrix", world)
built = time.perf_counter()
print(json.dumps({"imports_s": imported - started, "specs_and_apps_s": built - imported}))
"""


def cold_start(rounds: int = 3) -> dict[str, Any]:
    """`mockgen serve` from process start until both services answer; and, inside a fresh interpreter,
    the imports apart from loading, resolving and compiling both specs into apps."""
    process_times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with servers.mock() as running:
            servers.wait_for(f"{running.url}/_matrix/client/versions", time.monotonic() + 30)
            process_times.append(time.perf_counter() - started)
    inside = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", _BUILD], capture_output=True, text=True, check=True, env=servers.ENV
            ).stdout
        )
        for _ in range(rounds)
    ]
    return {
        "process_to_ready_s": round(statistics.median(process_times), 3),
        "imports_s": round(statistics.median(i["imports_s"] for i in inside), 3),
        "specs_and_apps_s": round(statistics.median(i["specs_and_apps_s"] for i in inside), 3),
    }


def reset_time(rounds: int = 20) -> dict[str, Any]:
    """`World.reset()` of a world holding 200 users, 200 rooms and 1,000 agents."""
    world = World(MockConfig())
    seed = {
        "users": [{"username": f"user{n}", "password": "pw"} for n in range(200)],
        "agents": [{"name": f"agent {n}"} for n in range(1000)],
        "rooms": [{"creator": f"user{n}", "name": f"room {n}"} for n in range(200)],
    }
    times = []
    for _ in range(rounds):
        world.apply_seed(seed)
        started = time.perf_counter()
        world.reset()
        times.append(time.perf_counter() - started)
    return {"reset_ms": round(statistics.median(times) * 1000, 2)}


def memory(requests: int, connections: int) -> dict[str, Any]:
    """Resident memory of the validated mock after a warm-up and after `requests` more requests of the
    steady mix (no state growth, so only a leak, such as an unbounded journal, could show)."""
    with servers.mock() as running:
        variables = load.prepare(running.url)
        load.run_wrk(running.url, variables, seconds=5, connections=connections, mix="steady")
        before = running.rss or 0
        sent = 0
        while sent < requests:
            sent += load.run_wrk(
                running.url, variables, seconds=10, connections=connections, mix="steady"
            ).requests
        after = running.rss or 0
    return {
        "requests": sent,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "growth": round(after / before - 1, 3) if before else None,
    }


def make_test_seconds() -> float:
    started = time.perf_counter()
    subprocess.run(["make", "test"], cwd=servers.ROOT, check=True, capture_output=True, timeout=900)
    return round(time.perf_counter() - started, 1)
