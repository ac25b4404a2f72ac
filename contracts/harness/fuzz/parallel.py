"""Fuzzing on several processes: each worker runs its own mock servers and its share of the examples
(seed + worker number, or unseeded over a shared example database); coverage is merged, the first failure
found is reported."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from contracts.coverage import Coverage
from contracts.databases import open_database
from contracts.harness.fuzz.runner import Failure, FuzzResult, Progress, fuzz
from contracts.harness.fuzz.target import load_target
from mockgen.world import MockConfig

# What a worker shares with the parent, set by the pool's initializer: the examples done, and how many
# plans the sweep holds (known once the worker that runs it has calibrated).
_shared: dict[str, Synchronized[int]] = {}


def _init(counter: Synchronized[int], swept: Synchronized[int]) -> None:
    _shared["counter"] = counter
    _shared["swept"] = swept


def _sweep_size(count: int) -> None:
    swept = _shared.get("swept")
    if swept is not None:
        swept.value = count


def _tick(_: object) -> None:
    counter = _shared.get("counter")
    if counter is not None:
        with counter.get_lock():
            counter.value += 1


@dataclass
class _Share:
    target: str
    examples: int
    seed: int | None
    time_bound: float
    sweep: bool  # one worker runs the sweep, which is the same everywhere
    database: str | None  # a directory or a redis:// URL: both are safe to share between processes
    virtual_time: bool
    config: MockConfig | None = None


def _run_share(share: _Share) -> dict[str, Any]:
    result = fuzz(
        load_target(share.target),
        examples=share.examples,
        seed=share.seed,
        time_bound=share.time_bound,
        virtual_time=share.virtual_time,
        progress=False,
        on_example=_tick,
        on_sweep=_sweep_size if share.sweep else None,  # the others' empty sweeps would overwrite it
        config=share.config,
        sweep=share.sweep,
        database=open_database(share.database) if share.database else None,
    )
    failure = result.failure
    return {
        "examples": result.examples,
        "swept": result.swept,
        "seconds": result.seconds,
        "operations": result.operations,
        "coverage": result.coverage.to_json(),
        "failure": None
        if failure is None
        else {
            "plan": failure.plan,
            "problems": failure.problems,
            "workdir": failure.workdir,
            "plan_file": failure.plan_file,
            "swept": failure.swept,
            "calibration": failure.calibration,
        },
    }


def _start_method() -> str:
    """Fork where it is safe: a forked worker has the parent's imports already (the mock, its specs,
    Hypothesis: seconds of a worker's start otherwise). A parent with other threads may fork one midway
    through holding a lock, so it spawns."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


def fuzz_parallel(
    target: str,
    *,
    examples: int,
    workers: int,
    seed: int | None,
    time_bound: float,
    progress: bool,
    sweep: bool = True,
    database: str | None = None,
    config: MockConfig | None = None,
    virtual_time: bool = True,
) -> FuzzResult:
    if seed is not None and database is not None:
        raise ValueError("a seed and an example database exclude each other (a seeded run ignores it)")
    if database is not None:
        open_database(database)  # refused here, in one line, rather than by every worker
    context = multiprocessing.get_context(_start_method())
    counter: Synchronized[int] = context.Value("i", 0)
    swept: Synchronized[int] = context.Value("i", 0)
    shares = [
        _Share(
            target,
            examples // workers + (1 if n < examples % workers else 0),
            None if seed is None else seed + n,
            time_bound,
            sweep and n == 0,
            database,
            virtual_time,
            config,
        )
        for n in range(workers)
    ]
    meter = Progress(examples, enabled=progress)
    coverage = Coverage()
    started = time.perf_counter()
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init, initargs=(counter, swept)
    ) as pool:
        futures = [pool.submit(_run_share, share) for share in shares]
        seen = 0
        finished = False
        while not finished:
            finished = all(future.done() for future in futures)  # then one last count of the ticks
            if not finished:
                # Back as soon as the last worker ends, not at the next 0.2 s tick of the progress line.
                wait(futures, timeout=0.2)
            meter.total = examples + swept.value  # the sweep's examples are counted too
            while seen < counter.value:
                seen += 1
                meter.tick()
        parts = [future.result() for future in futures]
    meter.finish()
    failure: Failure | None = None
    operations: set[str] = set()
    for part in parts:
        coverage.merge(Coverage.from_json(part["coverage"]))
        operations.update(part["operations"])
        if failure is None and part["failure"] is not None:
            failure = Failure(**part["failure"])
    return FuzzResult(
        target=target,
        examples=sum(part["examples"] for part in parts),
        seconds=time.perf_counter() - started,
        seed=seed,
        coverage=coverage,
        operations=sorted(operations),
        failure=failure,
        swept=sum(part["swept"] for part in parts),
    )
