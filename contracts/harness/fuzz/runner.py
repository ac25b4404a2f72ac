"""Run fuzz examples against a target through the mock, shrink failures, report coverage.

One example: reset the mock world to the plan's starting point, install the plan's faults, run the target,
clear the faults, run it again, then check every invariant. Hypothesis draws the plans, shrinks a failing
one to a minimal plan, and hands back a blob that replays it (`contracts fuzz --replay BLOB`)."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sys
import tempfile
import time
import unittest
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.database import ExampleDatabase
from hypothesis.errors import DidNotReproduce, InvalidArgument

from contracts.coverage import Coverage, operations_called
from contracts.harness.fuzz.invariants import Observation, Run, check_all
from contracts.harness.fuzz.plan import Plan, plans, sweep_plans
from contracts.harness.fuzz.target import Target
from contracts.validation import validator_for
from mockgen.server import LOOP_FACTORY, MockServers
from mockgen.world import DEFAULT_USERS, MockConfig, World

SERVICES = ("letta", "matrix")
CALIBRATION = Plan(agents=("calibration-one", "calibration-two"))
_BLOB = re.compile(r"@reproduce_failure\('([^']+)', b'([^']+)'\)")


class InvariantBroken(AssertionError):
    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {'; '.join(found)}" for name, found in problems.items()))


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


class CapturedLog(logging.Handler):
    """What the target logs (warnings and worse, by default) during one example: kept off the terminal,
    where it would bury the progress line, and written beside a failing example's files."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class FuzzSession:
    """The mock servers (on a background thread) and an event loop for the target, for many examples."""

    def __init__(self, target: Target, *, time_bound: float = 20.0) -> None:
        self.target = target
        self.time_bound = time_bound
        self.servers = MockServers(World(MockConfig()))
        self.world = self.servers.world
        self.core_users = frozenset(self.world.matrix.user_id_for(str(u["username"])) for u in DEFAULT_USERS)
        self.loop = LOOP_FACTORY()
        self.root = Path(tempfile.mkdtemp(prefix="contracts-fuzz-"))
        self.coverage = Coverage()
        self.operations: list[str] = []
        self.examples = 0
        self.cold_operations: frozenset[str] = frozenset()
        self.log = CapturedLog()

    def __enter__(self) -> FuzzSession:
        logging.getLogger().addHandler(self.log)
        try:
            self.servers.start()
            self.calibrate()
        except BaseException:
            # `with` calls __exit__ only once __enter__ returned: stop the servers' thread, drop the log
            # handler and the temporary directory here, or a failed calibration leaks them.
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.servers.stop()
        self.loop.close()
        logging.getLogger().removeHandler(self.log)
        shutil.rmtree(self.root, ignore_errors=True)

    def calibrate(self) -> None:
        """Two runs without faults show which operations the target calls (the scope of its coverage)
        and which of them on a first run (`cold_operations`)."""
        CALIBRATION.prepare(self.world)
        workdir = Path(tempfile.mkdtemp(dir=self.root))
        first = self._call(workdir)
        first_ended = self.world.journal.last_seq
        second = self._call(workdir)
        journal = [entry.to_json() for entry in self.world.journal]
        self.cold_operations = frozenset(operations_called(e for e in journal if e["seq"] <= first_ended))
        observation = Observation(
            self.target, CALIBRATION, workdir, first, second, journal, self.world.snapshot(),
            self.time_bound, self.core_users,
        )  # fmt: skip
        problems = check_all(observation)
        if problems:
            raise InvariantBroken(problems)
        self.operations = sorted(operations_called(journal))
        validators = {service: validator_for(service) for service in SERVICES}
        self.coverage = Coverage.documented(validators, self.operations)
        self.coverage.record(journal)

    def sweep(self) -> list[Plan]:
        return sweep_plans(list(self.coverage.cells), self.read_operations, self.cold_operations)

    @property
    def read_operations(self) -> frozenset[str]:
        return frozenset(
            operation.operation_id
            for service in SERVICES
            for operation in validator_for(service).iter_operations()
            if operation.method in ("GET", "HEAD")
        )

    def _call(self, workdir: Path) -> Run:
        started = time.perf_counter()
        error: BaseException | None = None
        coroutine = self.target.run(self.servers.endpoints.letta, self.servers.endpoints.matrix, workdir)
        try:
            self.loop.run_until_complete(asyncio.wait_for(coroutine, self.time_bound))
        except Exception as exc:  # anything the target lets escape is what the invariants judge
            error = exc
        run = Run(seconds=time.perf_counter() - started, error=error)
        if self.target.load_state is not None:
            try:
                run.state = self.target.load_state(workdir)
            except Exception as exc:  # a state that does not load is itself a finding
                run.state_error = f"{type(exc).__name__}: {exc}"
        return run

    def run_example(self, plan: Plan) -> Observation:
        self.examples += 1
        self.log.lines.clear()
        plan.prepare(self.world)
        workdir = Path(tempfile.mkdtemp(dir=self.root))
        warm = self._call(workdir) if plan.warm else None
        plan.install_faults(self.world)
        faulted = self._call(workdir)
        self.world.faults.clear()
        clean = self._call(workdir)
        journal = [entry.to_json() for entry in self.world.journal]
        self.coverage.record(journal)
        return Observation(
            target=self.target,
            plan=plan,
            workdir=workdir,
            faulted=faulted,
            clean=clean,
            journal=journal,
            snapshot=self.world.snapshot(),
            time_bound=self.time_bound,
            core_users=self.core_users,
            warm=warm,
        )


@dataclass
class Failure:
    plan: Plan
    problems: dict[str, list[str]]
    blob: str | None
    workdir: Path
    swept: bool = False  # found by the sweep, which is the same every run

    def replay_command(self, target: str) -> str:
        if self.swept:
            return f"contracts fuzz --target {target} --sweep-only"
        return f"contracts fuzz --target {target} --replay {self.blob}" if self.blob else ""


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
        if not self.enabled:
            return
        now = time.perf_counter()
        step = max(1, self.total // 10)
        if (self._tty and now - self._last < 0.1) or (not self._tty and self.done % step):
            return
        self._last = now
        rate = self.done / max(now - self.started, 1e-9)
        line = f"fuzz: {self.done}/{self.total} examples, {rate:.0f}/s"
        if coverage is not None:
            line += f", coverage {coverage.exercised}/{len(coverage.cells)} cells"
        sys.stderr.write(("\r" + line) if self._tty else line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self._tty:
            sys.stderr.write("\n")


def fuzz(target: Target, *, time_bound: float = 20.0, **options: Any) -> FuzzResult:
    """`fuzz_in` a fresh session (its own mock servers) for `target`."""
    with FuzzSession(target, time_bound=time_bound) as session:
        return fuzz_in(session, **options)


def fuzz_in(
    session: FuzzSession,
    *,
    examples: int = 100,
    seed: int | None = None,
    replay: str | None = None,
    database: ExampleDatabase | None = None,
    progress: bool = True,
    on_example: Callable[[Observation], None] | None = None,
    sweep: bool = True,
    sweep_only: bool = False,
) -> FuzzResult:
    """Run the sweep (`sweep_plans`) and `examples` random examples in `session`; or replay one blob; or,
    with `sweep_only`, the sweep alone. The result counts this call's examples and coverage only.

    A `seed` makes the run repeatable; a `database` replays the failures it holds before generating and
    keeps new ones. They exclude each other: Hypothesis ignores the database of a seeded test. A blob that
    no longer fits the plans (another Hypothesis version, a changed strategy) raises ValueError."""
    if seed is not None and database is not None:
        raise ValueError("a seed and an example database exclude each other (a seeded run ignores it)")
    if examples < 0:
        raise ValueError(f"examples must be 0 or more, not {examples}")
    hits_before, examples_before = dict(session.coverage.cells), session.examples
    strategy = plans(list(session.coverage.cells), session.read_operations)
    swept = session.sweep() if (sweep or sweep_only) and replay is None else []
    examples = 0 if sweep_only else examples
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
        print_blob=True,
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
            (observation.workdir / "target.log").write_text("\n".join(session.log.lines) + "\n")
            broken = InvariantBroken(problems)
            failing.append((broken, plan, observation.workdir))
            raise broken
        shutil.rmtree(observation.workdir, ignore_errors=True)

    run: Any = example
    for plan in reversed(swept):  # decorators apply inside out; the sweep runs in its own order
        run = hypothesis.example(plan)(run)
    if seed is not None:
        run = hypothesis.seed(seed)(run)
    if replay is not None:
        run = hypothesis.reproduce_failure(hypothesis.__version__, replay.encode())(run)
    started = time.perf_counter()
    try:
        failure = _outcome(run, failing, swept, replay, ran=lambda: session.examples > examples_before)
    finally:
        meter.finish()
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
    )


def _outcome(
    run: Callable[[], None],
    failing: list[tuple[InvariantBroken, Plan, Path]],
    swept: list[Plan],
    replay: str | None,
    *,
    ran: Callable[[], bool],
) -> Failure | None:
    """Run the Hypothesis test; its failure, if any. `ran` tells whether any example ran."""
    try:
        run()
    except (InvariantBroken, BaseExceptionGroup) as exc:
        return _failure(exc, failing, swept, replay)
    except unittest.SkipTest:
        pass  # nothing to run: no sweep, no random examples, nothing in the database
    except (DidNotReproduce, InvalidArgument) as exc:
        if replay is None:
            raise
        if not ran():  # the blob did not even make a plan
            raise ValueError(f"the blob does not replay with this target and Hypothesis: {exc}") from None
        # else the replayed example ran and passed, which Hypothesis reports as an error
    return None


def _failure(
    found: BaseException,
    failing: list[tuple[InvariantBroken, Plan, Path]],
    swept: list[Plan],
    replay: str | None,
) -> Failure:
    """The Failure of the first broken invariant in what Hypothesis raised: one InvariantBroken, or a group
    of them (several failing sweep plans, distinct failures, a flaky one). Anything else is re-raised."""
    if isinstance(found, BaseExceptionGroup) and found.split(InvariantBroken)[1] is not None:
        raise found  # something other than an invariant broke
    # A random example's blob is in the notes Hypothesis added, to the exception or to a group around it.
    first, notes = found, list(getattr(found, "__notes__", []))
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
        notes += getattr(first, "__notes__", [])
    raised, plan, workdir = next(entry for entry in failing if entry[0] is first)
    blob = _BLOB.search("\n".join(notes))
    return Failure(
        plan, raised.problems, blob.group(2) if blob else replay, _keep(workdir), swept=plan in swept
    )


def _keep(workdir: Path) -> Path:
    """Move a failing example's workdir out of the session's temporary root, which is removed at the end."""
    kept = Path(tempfile.mkdtemp(prefix="contracts-fuzz-failure-"))
    if workdir.exists():
        shutil.copytree(workdir, kept, dirs_exist_ok=True)
    return kept
