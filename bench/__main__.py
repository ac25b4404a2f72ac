"""`python -m bench` (what `make bench` runs): every figure, side by side, from one run on this machine,
printed as a table and written as JSON to bench/results/. Absolute figures drift on a shared machine;
the ratios, measured in the same run, are what to compare.

Servers: our mock with full validation (a), with validation off (b), a bare ASGI app under the same
uvicorn settings (c, the practical ceiling), Stoplight Prism serving our Matrix spec (d) and a real
Synapse (e); the relay also against a real Synapse and a real Letta 0.11.7 answering through the project's
loopback fake LLM. Traffic goes to 127.0.0.1 only; every server is started here and stopped by PID."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import figures, load, relay, servers

RESULTS = Path(__file__).resolve().parent / "results"


def _throughput(
    name: str, start: Callable[[], AbstractContextManager[servers.Running]], seconds: float, connections: int
) -> dict[str, Any]:
    print(f"  {name}: {seconds:.0f} s of the mixed Matrix workload, {connections} connections", flush=True)
    with start() as running:
        variables = load.prepare(running.url, stateful=running.stateful)
        result = load.run_wrk(running.url, variables, seconds=seconds, connections=connections)
    if name.startswith("mock") and (result.errors_status or result.errors_socket):
        # Our own mock must answer this mix without a single error; other servers' errors are reported.
        raise RuntimeError(
            f"{name}: {result.errors_status} error answers, {result.errors_socket} socket errors"
        )
    return result.to_json()


@contextlib.contextmanager
def _both(agents: int) -> Iterator[tuple[servers.Running, servers.Running]]:
    with servers.mock(agents=agents) as mock, servers.synapse() as synapse:
        yield mock, synapse


def run(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {"throughput": {}}
    print("1. throughput", flush=True)
    targets: dict[str, Callable[[], AbstractContextManager[servers.Running]]] = {
        "mock": servers.mock,
        "mock_no_validation": lambda: servers.mock(validate=False),
        "bare_asgi": servers.hello,
    }
    if servers.prism_installed():
        targets["prism"] = servers.prism
    if not args.no_synapse:
        targets["synapse"] = servers.synapse
    for name, start in targets.items():
        found["throughput"][name] = _throughput(name, start, args.seconds, args.connections)

    print("2. the bridge's sync", flush=True)
    with servers.mock(agents=args.agents) as mock:
        found["bridge_mock"] = figures.bridge_sync(mock, mock, args.agents, args.concurrency)
    if not args.no_synapse:
        with _both(args.synapse_agents) as (mock, synapse):
            found["bridge_synapse"] = figures.bridge_sync(
                mock, synapse, args.synapse_agents, args.concurrency
            )

    print("3. fuzz throughput", flush=True)
    found["fuzz"] = figures.fuzz_throughput(args.fuzz_examples)
    print("4. start-up and reset", flush=True)
    found["cold_start"] = figures.cold_start()
    found["reset"] = figures.reset_time()
    print(f"5. memory over {args.memory_requests} requests", flush=True)
    found["memory"] = figures.memory(args.memory_requests, args.connections)
    print("6. the long-poll: 500 idle /syncs waiting", flush=True)
    found["long_poll"] = figures.long_poll(seconds=args.seconds, connections=args.connections)
    print("7. the Letta message path: send and stream", flush=True)
    found["letta_messages"] = figures.letta_messages(seconds=args.seconds / 2)
    print(f"8. the relay: {args.relay_rooms} agent rooms through the mock", flush=True)
    found["relay"] = relay.relay_figures(rooms=args.relay_rooms)
    if not args.no_synapse:
        print(
            f"   and against real Synapse + Letta 0.11.7 (fake LLM): {args.relay_rooms} rooms, "
            f"{args.relay_real_latency_rounds} messages one at a time, "
            f"{args.relay_real_rounds} round(s) in every room",
            flush=True,
        )
        found["relay_real"] = relay.relay_figures_real(
            rooms=args.relay_rooms,
            latency_rounds=args.relay_real_latency_rounds,
            rounds=args.relay_real_rounds,
        )
    if not args.no_make_test:
        print("9. make test", flush=True)
        found["make_test_s"] = figures.make_test_seconds()
    return found


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def goals(found: dict[str, Any]) -> list[tuple[str, Any, str, bool | None]]:
    """(what, measured, goal, met) for every goal of the bench."""
    rates = {name: figures_["per_second"] for name, figures_ in found["throughput"].items()}
    mock = rates.get("mock")
    rows: list[tuple[str, Any, str, bool | None]] = []

    def add(what: str, value: Any, goal: str, met: Callable[[Any], bool]) -> None:
        rows.append((what, value, goal, None if value is None else met(value)))

    add("mock / bare ASGI (req/s)", _ratio(mock, rates.get("bare_asgi")), ">= 0.5", lambda v: v >= 0.5)
    add("mock / Prism (req/s)", _ratio(mock, rates.get("prism")), ">= 3", lambda v: v >= 3)
    add("mock / Synapse (req/s)", _ratio(mock, rates.get("synapse")), "(figure)", lambda v: True)
    add(
        "mock / mock without validation",
        _ratio(mock, rates.get("mock_no_validation")),
        "(figure)",
        lambda v: True,
    )
    add("1,000-agent sync via mock (s)", found["bridge_mock"]["first_sync_s"], "< 10", lambda v: v < 10)
    synapse_sync = found.get("bridge_synapse")
    if synapse_sync:
        per_agent = _ratio(synapse_sync["seconds_per_agent"], found["bridge_mock"]["seconds_per_agent"])
        add("sync s/agent: Synapse / mock", per_agent, "(figure)", lambda v: True)
    add(
        "fuzz examples/s (bridge, 2 workers)", found["fuzz"]["bridge_2_workers"], ">= 100", lambda v: v >= 100
    )
    add("cold start, process to ready (s)", found["cold_start"]["process_to_ready_s"], "< 1", lambda v: v < 1)
    add("reset (ms)", found["reset"]["reset_ms"], "< 5", lambda v: v < 5)
    growth = found["memory"]["growth"]
    add("RSS growth over 100k requests", growth, "within ±10%", lambda v: abs(v) <= 0.10)
    long_poll = found.get("long_poll") or {}
    add(
        "send -> waiting sync p50, 500 idle long-polls (ms)",
        long_poll.get("send_to_sync_p50_ms"),
        "< 5",
        lambda v: v < 5,
    )
    add("req/s drop with 500 idle long-polls", long_poll.get("drop"), "< 10%", lambda v: v < 0.10)
    add("req per CPU s drop, same run", long_poll.get("drop_per_cpu_s"), "(figure)", lambda v: True)
    messages = found.get("letta_messages") or {}
    add("sendAgentMessage turns/s (16 clients)", messages.get("turns_per_s"), "(figure)", lambda v: True)
    add("stream: first event p50 (ms)", messages.get("first_event_p50_ms"), "(figure)", lambda v: True)
    add("stream: first event p99 (ms)", messages.get("first_event_p99_ms"), "(figure)", lambda v: True)
    relayed = found.get("relay") or {}
    add("relay: send -> reply seen p50 (ms)", relayed.get("latency_p50_ms"), "< 5", lambda v: v < 5)
    add("relay: send -> reply seen p99 (ms)", relayed.get("latency_p99_ms"), "(figure)", lambda v: True)
    add("relay: messages/s, 100 rooms", relayed.get("messages_per_s"), "(figure)", lambda v: True)
    real = found.get("relay_real") or {}
    add("relay real: send -> reply seen p50 (ms)", real.get("latency_p50_ms"), "(figure)", lambda v: True)
    add("relay real: send -> reply seen p99 (ms)", real.get("latency_p99_ms"), "(figure)", lambda v: True)
    add("relay real: messages/s, 100 rooms", real.get("messages_per_s"), "(figure)", lambda v: True)
    add("relay real: answered by a notice", real.get("notices"), "(figure)", lambda v: True)
    add("make test (s)", found.get("make_test_s"), "< 60", lambda v: v < 60)
    return rows


def table(found: dict[str, Any]) -> str:
    lines = ["", "Throughput, mixed Matrix workload (wrk, 1 thread)", ""]
    lines.append(f"  {'server':<20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, row in found["throughput"].items():
        errors = row["errors_status"] + row["errors_socket"]
        lines.append(
            f"  {name:<20} {row['per_second']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {errors:>7}"
        )
    lines += ["", "Other figures", ""]
    keys = (
        "bridge_mock",
        "bridge_synapse",
        "fuzz",
        "cold_start",
        "reset",
        "memory",
        "long_poll",
        "letta_messages",
        "relay",
        "relay_real",
    )
    for key in keys:
        if key in found:
            lines.append(f"  {key}: {json.dumps(found[key])}")
    if "make_test_s" in found:
        lines.append(f"  make test: {found['make_test_s']} s")
    lines += ["", "Goals", ""]
    for what, value, goal, met in goals(found):
        mark = {True: "met", False: "NOT met", None: "not measured"}[met]
        if goal == "(figure)":
            mark = ""
        lines.append(f"  {what:<40} {value!s:>10}  {goal:<12} {mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="length of each throughput run")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--agents", type=int, default=1000, help="agents synced through the mock")
    parser.add_argument("--synapse-agents", type=int, default=100, help="agents synced into real Synapse")
    parser.add_argument("--concurrency", type=int, default=32, help="agents the bridge handles at once")
    # Enough that a worker's start (imports, specs, the mock's servers: about a second) does not decide the
    # figure, as it does not in `make fuzz`'s 1,000 examples.
    parser.add_argument("--fuzz-examples", type=int, default=500, help="random fuzz examples per measure")
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument("--relay-rooms", type=int, default=100, help="agent rooms the relay serves")
    parser.add_argument(
        "--relay-real-latency-rounds", type=int, default=50, help="relay latency messages on real servers"
    )
    parser.add_argument(
        "--relay-real-rounds", type=int, default=1, help="relay throughput rounds on real servers"
    )
    parser.add_argument("--no-synapse", action="store_true", help="leave out the real Synapse (and Letta)")
    parser.add_argument("--no-make-test", action="store_true", help="leave out timing `make test`")
    args = parser.parse_args(argv)
    if not load.wrk_available():
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    found = run(args)
    found["bench_seconds"] = round(time.perf_counter() - started, 1)
    found["machine"] = {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform()}
    found["goals"] = [
        {"what": what, "value": value, "goal": goal, "met": met} for what, value, goal, met in goals(found)
    ]
    print(table(found))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(found, indent=2)
    (RESULTS / f"bench-{stamp}.json").write_text(text + "\n", encoding="utf-8")
    (RESULTS / "latest.json").write_text(text + "\n", encoding="utf-8")
    print(f"\nwritten to bench/results/bench-{stamp}.json ({found['bench_seconds']} s)")
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
