"""Run fuzz examples against a target through the mock, shrink failures, report coverage.

Each example runs in a `FuzzSession` (`session.py`: the mock servers, the target's loop, one example's
runs) and is judged by every invariant. Hypothesis draws the plans and shrinks a failing one to a minimal
plan, which is saved as JSON (`plan.json`) beside the failing example's files; `contracts fuzz --replay
FILE` runs that plan again, alone."""

from __future__ import annotations

import shutil
import sys
import time
import unittest
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.database import ExampleDatabase

from contracts.coverage import Coverage
from contracts.harness.fuzz.invariants import Observation, check_all
from contracts.harness.fuzz.plan import Plan, plans
from contracts.harness.fuzz.session import (
    PLAN_FILE,
    CalibrationFailed,
    Failure,
    FuzzSession,
    InvariantBroken,
    context_for,
    kept,
)
from contracts.harness.fuzz.target import Target
from mockgen.store.errors import ControlError
from mockgen.world import MockConfig

# The runner's API, with the session's names its callers import from here.
__all__ = [
    "PLAN_FILE",
    "Failure",
    "FuzzResult",
    "FuzzSession",
    "InvariantBroken",
    "Progress",
    "TargetDatabase",
    "context_for",
    "fuzz",
    "fuzz_in",
]


class TargetDatabase(ExampleDatabase):
    """An example database seen through one target's name. Every fuzz run's test function is the same
    function, so Hypothesis would file every target's failures under one key; a database shared between
    targets would replay one target's failing choices as another's plans."""

    def __init__(self, inner: ExampleDatabase, target: str) -> None:
        super().__init__()
        self.inner = inner
        self.prefix = target.encode() + b":"

    def save(self, key: bytes, value: bytes) -> None:
        self.inner.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.inner.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.inner.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.inner.move(self.prefix + src, self.prefix + dest, value)


@dataclass
class FuzzResult:
    target: str
    examples: int
    seconds: float
    seed: int | None
    coverage: Coverage
    operations: list[str]
    failure: Failure | None = None
    swept: int = 0  # how many of the examples were the sweep's
    replayed: bool = False  # the run was one saved plan, replayed

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


class Progress:
    """One status line on stderr, rewritten in place on a terminal, every 10 % otherwise."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.enabled = total, enabled
        self.done = 0
        self.started = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def tick(self, coverage: Coverage | None = None) -> None:
        self.done += 1
        self.show(coverage)

    def show(self, coverage: Coverage | None = None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        step = max(1, self.total // 10)
        if (self._tty and now - self._last < 0.1) or (not self._tty and self.done % step):
            return
        self._last = now
        rate = self.done / max(now - self.started, 1e-9)
        # Shrinking a failure runs plans past the total.
        done = (
            f"{self.total}/{self.total} (+{self.done - self.total} shrinking)"
            if self.done > self.total
            else (f"{self.done}/{self.total}")
        )
        line = f"fuzz: {done} examples, {rate:.0f}/s"
        if coverage is not None:
            line += f", coverage {coverage.exercised}/{len(coverage.cells)} cells"
        sys.stderr.write(("\r" + line) if self._tty else line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self._tty:
            sys.stderr.write("\n")


def fuzz(
    target: Target,
    *,
    time_bound: float = 20.0,
    config: MockConfig | None = None,
    virtual_time: bool = True,
    **options: Any,
) -> FuzzResult:
    """`fuzz_in` a fresh session (its own mock servers, configured by `config`) for `target`; a calibration
    that fails is the result's failure."""
    started = time.perf_counter()
    try:
        with FuzzSession(target, time_bound=time_bound, config=config, virtual_time=virtual_time) as session:
            return fuzz_in(session, **options)
    except CalibrationFailed as exc:
        return FuzzResult(
            target=target.name,
            examples=0,
            seconds=time.perf_counter() - started,
            seed=options.get("seed"),
            coverage=Coverage(),
            operations=[],
            failure=exc.failure,
            replayed=options.get("replay") is not None,
        )


def fuzz_in(
    session: FuzzSession,
    *,
    examples: int = 100,
    seed: int | None = None,
    replay: Plan | None = None,
    database: ExampleDatabase | None = None,
    progress: bool = True,
    on_example: Callable[[Observation], None] | None = None,
    sweep: bool = True,
    sweep_only: bool = False,
    on_sweep: Callable[[int], None] | None = None,
) -> FuzzResult:
    """Run the sweep (`sweep_plans`) and `examples` random examples in `session`; or, with `replay`, that
    one plan alone (a saved failure's, `load_plan`); or, with `sweep_only`, the sweep alone. The result
    counts this call's examples and coverage only.

    A `seed` makes the run repeatable; a `database` replays the failures it holds before generating and
    keeps new ones. They exclude each other: Hypothesis ignores the database of a seeded test. A replayed
    plan that the mock refuses (an operation or status the contract no longer has) raises ValueError."""
    if seed is not None and database is not None:
        raise ValueError("a seed and an example database exclude each other (a seeded run ignores it)")
    if replay is not None and (seed is not None or database is not None):
        raise ValueError("a replay runs its plan alone: it takes no seed and no example database")
    if examples < 0:
        raise ValueError(f"examples must be 0 or more, not {examples}")
    hits_before, examples_before = dict(session.coverage.cells), session.examples
    started = time.perf_counter()
    if replay is not None:
        failure, swept = _replay(session, replay, on_example), []
    else:
        swept = session.sweep() if sweep or sweep_only else []
        if on_sweep is not None:
            on_sweep(len(swept))
        failure = _search(session, swept, 0 if sweep_only else examples, seed, database, progress, on_example)
    coverage = Coverage({cell: hits - hits_before[cell] for cell, hits in session.coverage.cells.items()})
    return FuzzResult(
        target=session.target.name,
        examples=session.examples - examples_before,
        seconds=time.perf_counter() - started,
        seed=seed,
        coverage=coverage,
        operations=session.operations,
        failure=failure,
        swept=len(swept),
        replayed=replay is not None,
    )


def _replay(
    session: FuzzSession, plan: Plan, on_example: Callable[[Observation], None] | None
) -> Failure | None:
    """Run exactly `plan`, once, and judge it."""
    try:
        observation = session.run_example(plan)
    except ControlError as exc:  # the plan's world or faults, refused before the target ran
        raise ValueError(f"the mock refuses the plan: {exc}") from None
    if on_example is not None:
        on_example(observation)
    problems = check_all(observation)
    if problems:
        session.keep_log(observation.workdir)
        return kept(plan, problems, observation.workdir)
    shutil.rmtree(observation.workdir, ignore_errors=True)
    return None


def _search(
    session: FuzzSession,
    swept: list[Plan],
    examples: int,
    seed: int | None,
    database: ExampleDatabase | None,
    progress: bool,
    on_example: Callable[[Observation], None] | None,
) -> Failure | None:
    """The sweep's plans, then Hypothesis's: the first failure, shrunk."""
    strategy = plans(list(session.coverage.cells), session.read_operations, relays=session.target.relays)
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]
    if not examples:
        phases.remove(Phase.generate)  # Hypothesis runs at least one example when it may generate
    meter = Progress(len(swept) + examples, enabled=progress)
    # Every failing example, in order, with the exception it raised: Hypothesis may report several at once
    # (an ExceptionGroup), and the plan of the one reported is looked up by that exception.
    failing: list[tuple[InvariantBroken, Plan, Path]] = []

    @settings(
        max_examples=max(examples, 1),
        database=TargetDatabase(database, session.target.name) if database is not None else None,
        deadline=None,
        print_blob=False,
        derandomize=False,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @given(strategy)
    def example(plan: Plan) -> None:
        observation = session.run_example(plan)
        meter.tick(session.coverage)
        if on_example is not None:
            on_example(observation)
        problems = check_all(observation)
        if problems:
            session.keep_log(observation.workdir)
            broken = InvariantBroken(problems)
            failing.append((broken, plan, observation.workdir))
            raise broken
        shutil.rmtree(observation.workdir, ignore_errors=True)

    run: Any = example
    for plan in reversed(swept):  # decorators apply inside out; the sweep runs in its own order
        run = hypothesis.example(plan)(run)
    if seed is not None:
        run = hypothesis.seed(seed)(run)
    try:
        run()
    except (InvariantBroken, BaseExceptionGroup) as exc:
        raised, plan, workdir = _reported(exc, failing)
        return kept(plan, raised.problems, workdir, swept=plan in swept)
    except unittest.SkipTest:
        pass  # nothing to run: no sweep, no random examples, nothing in the database
    finally:
        meter.finish()
    return None


def _reported(
    found: BaseException, failing: list[tuple[InvariantBroken, Plan, Path]]
) -> tuple[InvariantBroken, Plan, Path]:
    """The first broken invariant in what Hypothesis raised, one InvariantBroken or a group of them
    (several failing sweep plans, distinct failures, a flaky one), with its plan and workdir. Anything
    else is re-raised."""
    if isinstance(found, BaseExceptionGroup) and found.split(InvariantBroken)[1] is not None:
        raise found  # something other than an invariant broke
    first = found
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return next(entry for entry in failing if entry[0] is first)
