"""The figures other than throughput: the bridge's sync, fuzz examples per second, start-up and reset
times, memory over 100,000 requests, and the wall time of `make test`."""

from __future__ import annotations

import asyncio
import json
import resource
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
from letta_matrix_reference.live.process import proc_stat
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


def fuzz_throughput(examples: int, rounds: int = 3) -> dict[str, Any]:
    """Random examples (no sweep) end to end through HTTP: one process, then two worker processes, `rounds`
    times (the median is the figure: on this shared machine one run may differ from the next by 15%). The
    sleeper waits 3 x 1 s in every run (2 or 3 runs an example): on virtual time that costs no wall time.
    The workers' CPU seconds per example are the figure that contention moves least."""
    figures: dict[str, Any] = {}
    for label, target in (
        ("bridge", "letta_matrix_reference.bridge.target:fuzz_sync"),
        ("trivial", "tests.fuzz_targets:lists_agents"),
        ("sleeper", "tests.fuzz_targets:backs_off"),
    ):
        result = fuzz(load_target(target), examples=examples, seed=1, progress=False, sweep=False)
        if result.failure is not None:
            raise RuntimeError(f"fuzzing {target} failed: {result.failure.problems}")
        figures[f"{label}_1_worker"] = round(result.examples_per_second, 1)
    rates, cpu_ms = [], []
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        parallel = fuzz_parallel(
            "letta_matrix_reference.bridge.target:fuzz_sync",
            examples=2 * examples,
            workers=2,
            seed=1,
            time_bound=20.0,
            progress=False,
            sweep=False,
        )  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers have ended: counted
        if parallel.failure is not None:
            raise RuntimeError(f"fuzzing the bridge failed: {parallel.failure.problems}")
        rates.append(round(parallel.examples_per_second, 1))
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        cpu_ms.append(1000 * cpu / parallel.examples)
    figures["bridge_2_workers"] = statistics.median(rates)
    figures["bridge_2_workers_runs"] = rates
    figures["bridge_2_workers_cpu_ms_per_example"] = round(statistics.median(cpu_ms), 2)
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


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) a process has used."""
    stat = proc_stat(pid)
    if stat is None:
        raise RuntimeError(f"no process {pid} to measure")
    return stat.cpu_seconds


def long_poll(
    clients: int = 500, rounds: int = 200, seconds: float = 5.0, connections: int = 32
) -> dict[str, Any]:
    """The long-poll (issue 13): with `clients` idle /syncs waiting (a user in no room: as Synapse's notifier
    does, no send of the mix nor of the rounds concerns them, so none wakes them), the time from the start of
    a send to the return of a /sync waiting for it (p50/p99 over `rounds`), and the mock's req/s on the mixed
    workload with them waiting against its req/s alone, measured before and again after: their mean is the
    baseline, so neither the state the mix leaves behind nor a drift of the machine's load counts for or
    against the waiters. Requests per CPU second of the mock's process too: other processes on the shared
    cores move req/s more than they move that."""
    import aiohttp  # the bench's other figures do not need it

    with servers.mock() as running:
        base = running.url
        variables = load.prepare(base)

        def mix() -> tuple[load.LoadResult, float]:
            """One wrk run, and the requests it made per CPU second of the mock."""
            cpu = _cpu_seconds(running.pid)
            result = load.run_wrk(base, variables, seconds=seconds, connections=connections)
            return result, result.requests / max(_cpu_seconds(running.pid) - cpu, 1e-9)

        before, before_per_cpu = mix()

        async def measure() -> dict[str, Any]:
            v3 = f"{base}/_matrix/client/v3"
            alice, bob, idle = (load.register(base, f"lp{time.time_ns()}{n}") for n in "abi")
            room = load._call(base, "POST", "/createRoom", {"preset": "public_chat"}, alice)["room_id"]
            load._call(base, "POST", f"/join/{room}", {}, bob)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def sync(token: str, **params: str) -> dict[str, Any]:
                    headers = {"Authorization": f"Bearer {token}"}
                    async with http.get(f"{v3}/sync", params=params, headers=headers) as answer:
                        found: dict[str, Any] = await answer.json()
                        return found

                idle_since = (await sync(idle))["next_batch"]
                stopping = False

                async def idle_client() -> None:
                    since = idle_since
                    while not stopping:
                        since = (await sync(idle, since=since, timeout="30000"))["next_batch"]

                waiting = [asyncio.create_task(idle_client()) for _ in range(clients)]
                await asyncio.sleep(1.0)  # every idle client connected and waiting
                since = (await sync(alice))["next_batch"]
                latencies = []
                for n in range(rounds):
                    pending = asyncio.create_task(sync(alice, since=since, timeout="10000"))
                    await asyncio.sleep(0.005)  # the sync is waiting
                    started = time.perf_counter()
                    body = {"msgtype": "m.text", "body": f"m{n}"}
                    headers = {"Authorization": f"Bearer {bob}"}
                    async with http.put(
                        f"{v3}/rooms/{room}/send/m.room.message/lp{n}", json=body, headers=headers
                    ) as sent:
                        assert sent.status == 200
                    since = (await pending)["next_batch"]
                    latencies.append((time.perf_counter() - started) * 1000)
                busy, busy_per_cpu = await asyncio.to_thread(mix)
                # News for the idle user (a room of theirs) answers every waiting sync, and none waits again:
                # a cancelled client would leave its sync waiting in the mock through the run after.
                stopping = True
                load._call(base, "POST", "/createRoom", {}, idle)
                await asyncio.wait_for(asyncio.gather(*waiting), 30)
            after, after_per_cpu = await asyncio.to_thread(mix)
            latencies.sort()
            alone = (before.per_second + after.per_second) / 2
            alone_per_cpu = (before_per_cpu + after_per_cpu) / 2
            return {
                "idle_clients": clients,
                "send_to_sync_p50_ms": round(statistics.median(latencies), 2),
                "send_to_sync_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
                "req_per_s_alone": round(alone, 1),
                "req_per_s_alone_before_after": [round(before.per_second, 1), round(after.per_second, 1)],
                "req_per_s_with_idle_long_polls": round(busy.per_second, 1),
                "drop": round(1 - busy.per_second / alone, 3),
                "req_per_cpu_s_alone_before_after": [round(before_per_cpu, 1), round(after_per_cpu, 1)],
                "req_per_cpu_s_with_idle_long_polls": round(busy_per_cpu, 1),
                "drop_per_cpu_s": round(1 - busy_per_cpu / alone_per_cpu, 3),
            }

        return asyncio.run(measure())


def letta_messages(seconds: float = 5.0, connections: int = 16, streams: int = 200) -> dict[str, Any]:
    """The Letta message path (issue 14): turns per second through the validated mock's sendAgentMessage
    (`connections` clients sending echo turns for `seconds`), and the time from a streamAgentMessage request
    to its first server-sent event (p50/p99 over `streams` sequential streams)."""
    import aiohttp  # the bench's other figures do not need it

    with servers.mock(agents=1) as running:
        letta = str(running.letta_url)
        headers = {"Authorization": f"Bearer {DEFAULT_LETTA_TOKEN}"}
        body = {"messages": [{"role": "user", "content": "hello"}]}

        async def measure() -> dict[str, Any]:
            async with aiohttp.ClientSession(headers=headers) as http:
                async with http.get(f"{letta}/v1/agents/") as listed:
                    agent = (await listed.json())[0]["id"]
                url = f"{letta}/v1/agents/{agent}/messages"
                deadline = time.perf_counter() + seconds
                sent = 0

                async def client() -> None:
                    nonlocal sent
                    while time.perf_counter() < deadline:
                        async with http.post(url, json=body) as answer:
                            assert answer.status == 200
                            await answer.read()
                        sent += 1

                started = time.perf_counter()
                await asyncio.gather(*(client() for _ in range(connections)))
                rate = sent / (time.perf_counter() - started)
                firsts = []
                for _ in range(streams):
                    started = time.perf_counter()
                    async with http.post(f"{url}/stream", json=body) as answer:
                        await answer.content.readline()
                        firsts.append((time.perf_counter() - started) * 1000)
                        await answer.read()
            firsts.sort()
            return {
                "turns_per_s": round(rate, 1),
                "connections": connections,
                "first_event_p50_ms": round(statistics.median(firsts), 2),
                "first_event_p99_ms": round(firsts[int(len(firsts) * 0.99) - 1], 2),
            }

        return asyncio.run(measure())
