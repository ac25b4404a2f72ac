"""Fuzzing on several processes: each worker runs its own mock servers and takes chunks of the examples as
it finishes the last (seed + chunk number, or unseeded over a shared example database); coverage is merged,
the first failure found is reported."""

from __future__ import annotations

import multiprocessing
import threading
import time
import unittest
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from contracts.coverage import Coverage
from contracts.databases import open_database
from contracts.harness.fuzz.runner import Failure, FuzzResult, FuzzSession, Progress, fuzz_in
from contracts.harness.fuzz.session import CalibrationFailed
from contracts.harness.fuzz.target import load_target
from mockgen.world import MockConfig

# The smallest chunk: a chunk is one Hypothesis run (its first example is the simplest plan), and the
# workers end at most one chunk apart.
MIN_CHUNK = 10

# What a worker shares with the parent and the other workers, set by the pool's initializer: the examples
# done, how many plans the sweep holds (known once the worker that runs it has calibrated), the next chunk
# to take, and whether a worker has found a failure (the others then stop).
_shared: dict[str, Synchronized[int]] = {}


def _init(
    counter: Synchronized[int],
    swept: Synchronized[int],
    next_chunk: Synchronized[int],
    stop: Synchronized[int],
) -> None:
    _shared.update(counter=counter, swept=swept, next_chunk=next_chunk, stop=stop)


def _sweep_size(count: int) -> None:
    swept = _shared.get("swept")
    if swept is not None:
        swept.value = count


def _tick(_: object) -> None:
    counter = _shared.get("counter")
    if counter is not None:
        with counter.get_lock():
            counter.value += 1
    stop = _shared.get("stop")
    if stop is not None and stop.value:
        # Another worker found a failure: Hypothesis ends a run on a skip without shrinking anything.
        raise unittest.SkipTest("another worker found a failure")


def _claim(chunks: int) -> int | None:
    """The number of the next chunk nobody has taken, if any is left and no failure was found."""
    next_chunk, stop = _shared["next_chunk"], _shared["stop"]
    with next_chunk.get_lock():
        if stop.value or next_chunk.value >= chunks:
            return None
        claimed = next_chunk.value
        next_chunk.value += 1
        return claimed


def chunk_sizes(examples: int, workers: int) -> list[int]:
    """The examples as chunks that shrink as they run out (guided self-scheduling): each worker takes the
    next chunk when it has run its last, so the workers end close together whatever their examples cost.
    The sizes depend on nothing but the two counts, so a seeded run runs the same plans, whichever worker
    takes which chunk. No examples make an empty chunk for each worker, so each replays what the example
    database holds."""
    if examples == 0:
        return [0] * workers
    sizes: list[int] = []
    left = examples
    while left:
        size = min(left, max(MIN_CHUNK, -(-left // (2 * workers))))
        sizes.append(size)
        left -= size
    return sizes


@dataclass
class _Job:
    target: str
    chunks: list[int]  # the examples of each chunk (`chunk_sizes`)
    seed: int | None
    time_bound: float
    sweep: bool  # whoever takes chunk 0 runs the sweep, which is the same everywhere
    database: str | None  # a directory or a redis:// URL: both are safe to share between processes
    virtual_time: bool
    config: MockConfig | None = None


def _run_chunks(job: _Job) -> dict[str, Any]:
    """One worker: its own session, then chunks until none is left or a failure is found."""
    examples = swept = 0
    coverage = Coverage()
    operations: list[str] = []
    failure: Failure | None = None
    try:
        with FuzzSession(
            load_target(job.target),
            time_bound=job.time_bound,
            config=job.config,
            virtual_time=job.virtual_time,
        ) as session:
            operations = session.operations
            database = open_database(job.database) if job.database else None
            while failure is None and (chunk := _claim(len(job.chunks))) is not None:
                sweeps = job.sweep and chunk == 0
                result = fuzz_in(
                    session,
                    examples=job.chunks[chunk],
                    seed=None if job.seed is None else job.seed + chunk,
                    database=database,
                    progress=False,
                    on_example=_tick,
                    sweep=sweeps,
                    on_sweep=_sweep_size if sweeps else None,  # the others' empty sweeps would overwrite it
                )
                examples, swept, failure = examples + result.examples, swept + result.swept, result.failure
                coverage.merge(result.coverage)
    except CalibrationFailed as exc:
        failure = exc.failure
    if failure is not None:
        _shared["stop"].value = 1
    return {
        "examples": examples,
        "swept": swept,
        "operations": operations,
        "coverage": coverage.to_json(),
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
    next_chunk: Synchronized[int] = context.Value("i", 0)
    stop: Synchronized[int] = context.Value("i", 0)
    job = _Job(
        target, chunk_sizes(examples, workers), seed, time_bound, sweep, database, virtual_time, config
    )
    meter = Progress(examples, enabled=progress)
    coverage = Coverage()
    started = time.perf_counter()
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init, initargs=(counter, swept, next_chunk, stop)
    ) as pool:
        futures = [pool.submit(_run_chunks, job) for _ in range(workers)]
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
