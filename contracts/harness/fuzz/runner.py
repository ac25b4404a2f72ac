"""Run fuzz examples against a target through the mock, shrink failures, report coverage.

One example: reset the mock world to the plan's starting point, install the plan's faults, run the target,
clear the faults, run it again, then check every invariant. Hypothesis draws the plans and shrinks a failing
one to a minimal plan, which is saved as JSON (`plan.json`) beside the failing example's files; `contracts
fuzz --replay FILE` runs that plan again, alone.

By default the target and the mock servers share one event loop on virtual time (`clock.py`): sleeps,
backoffs, timeouts and fault latencies cost no wall time. With `virtual_time=False` the mock serves from a
thread of its own and the target's loop keeps real time."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shlex
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

from contracts.coverage import Coverage, operations_called
from contracts.harness.fuzz.clock import virtual_loop
from contracts.harness.fuzz.invariants import Observation, Run, check_all
from contracts.harness.fuzz.kills import killed_run
from contracts.harness.fuzz.plan import SWEEP_SAID, Plan, plans, save_plan, sweep_plans
from contracts.harness.fuzz.target import Account, FuzzContext, Target
from contracts.validation import validator_for
from mockgen.server import LOOP_FACTORY, MockServers
from mockgen.store.errors import ControlError
from mockgen.world import DEFAULT_USERS, MockConfig, World

SERVICES = ("letta", "matrix")
# The examples' working directories live in memory where the machine has a RAM filesystem: a target that
# fsyncs its state (as the reference bridge does, several times a run) otherwise waits on the disk for most
# of an example. A failing example's files are copied out to the ordinary temporary directory.
RAM_DIRECTORY = Path("/dev/shm")
CALIBRATION = Plan(agents=("calibration-one", "calibration-two"), said=SWEEP_SAID)
PLAN_FILE = "plan.json"


class InvariantBroken(AssertionError):
    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {'; '.join(found)}" for name, found in problems.items()))


class CalibrationFailed(InvariantBroken):
    """The target broke an invariant in the calibration runs, before any example: reported as any failure
    (`failure`: its plan saved, its files kept)."""

    def __init__(self, problems: dict[str, list[str]], failure: Failure) -> None:
        super().__init__(problems)
        self.failure = failure


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


def _seeded_users(world: World) -> list[dict[str, Any]]:
    """The accounts `world` starts with (as `World` seeds them: the config's, else the defaults)."""
    users: list[dict[str, Any]] = world.config.seed.get("users", DEFAULT_USERS)
    return users


def context_for(world: World, letta_url: str, matrix_url: str, workdir: Path) -> FuzzContext:
    """What a target is handed to run against `world`'s servers: their URLs, the Letta token, the server
    name, and the first server admin and first other account the world starts with."""
    users = _seeded_users(world)
    admin = next((user for user in users if user.get("admin")), None)
    bot = next((user for user in users if not user.get("admin")), None)
    if admin is None or bot is None:
        raise ValueError("a fuzz target needs a server admin and another account; the mock world lacks one")
    return FuzzContext(
        letta_url=letta_url,
        matrix_url=matrix_url,
        workdir=workdir,
        letta_token=world.config.letta_token or "",  # "": an open Letta takes any token
        server_name=world.config.server_name,
        admin=Account(str(admin["username"]), str(admin["password"])),
        bot=Account(str(bot["username"]), str(bot["password"])),
    )


def _scratch_directory() -> Path | None:
    """Where the examples' directories go: the RAM filesystem if this machine has one we may write to,
    else (None) the ordinary temporary directory."""
    if RAM_DIRECTORY.is_dir() and os.access(RAM_DIRECTORY, os.W_OK | os.X_OK):
        return RAM_DIRECTORY
    return None


class FuzzSession:
    """The mock servers and an event loop for the target, for many examples: on virtual time the servers
    serve on that loop, on real time from a background thread."""

    def __init__(
        self,
        target: Target,
        *,
        time_bound: float = 20.0,
        config: MockConfig | None = None,
        virtual_time: bool = True,
    ) -> None:
        self.target = target
        self.time_bound = time_bound
        self.servers = MockServers(World(config or MockConfig()))
        self.world = self.servers.world
        self.core_users = frozenset(
            self.world.matrix.user_id_for(str(user["username"])) for user in _seeded_users(self.world)
        )
        self.virtual_time = virtual_time
        self.loop = virtual_loop() if virtual_time else LOOP_FACTORY()
        self._stop_serving = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None
        self.root = Path(tempfile.mkdtemp(prefix="contracts-fuzz-", dir=_scratch_directory()))
        self.coverage = Coverage()
        self.operations: list[str] = []
        self.examples = 0
        self.cold_operations: frozenset[str] = frozenset()
        self.log = CapturedLog()

    def __enter__(self) -> FuzzSession:
        logging.getLogger().addHandler(self.log)
        try:
            self._start_servers()
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
        if self._serving is not None:
            self._stop_serving.set()
            self.loop.run_until_complete(self._serving)
        else:
            self.servers.stop()
        self.loop.close()
        logging.getLogger().removeHandler(self.log)
        shutil.rmtree(self.root, ignore_errors=True)

    def _start_servers(self) -> None:
        """On virtual time, the servers serve on the target's loop (they run while a target runs, which is
        when anyone asks them anything); on real time, from their own thread."""
        if not self.virtual_time:
            self.servers.start()
            return
        ready: asyncio.Future[None] = self.loop.create_future()

        def on_ready(_: object) -> None:
            ready.set_result(None)

        serving = self.loop.create_task(self.servers.serve(self._stop_serving, on_ready))
        self.loop.run_until_complete(asyncio.wait({ready, serving}, return_when=asyncio.FIRST_COMPLETED))
        if not ready.done():
            serving.result()  # raises what stopped the servers
            raise RuntimeError("the mock servers stopped before they were ready")
        self._serving = serving

    def new_context(self) -> FuzzContext:
        """The context of one example: a fresh working directory, the session's servers."""
        workdir = Path(tempfile.mkdtemp(dir=self.root))
        return context_for(self.world, self.servers.endpoints.letta, self.servers.endpoints.matrix, workdir)

    def calibrate(self) -> None:
        """Two runs without faults show which operations the target calls (the scope of its coverage)
        and which of them on a first run (`cold_operations`)."""
        CALIBRATION.prepare(self.world)
        context = self.new_context()
        first = self._call(context)
        first_ended = self.world.journal.last_seq
        CALIBRATION.begin(self.world)  # people talk in the rooms the first run made
        second = self._call(context)
        journal = self.world.journal.entries()
        self.cold_operations = frozenset(operations_called(e for e in journal if e.seq <= first_ended))
        observation = Observation(
            self.target, CALIBRATION, context, first, second, journal, self.world.snapshot(),
            self.time_bound, self.core_users,
        )  # fmt: skip
        problems = check_all(observation)
        if problems:
            self.keep_log(context.workdir)
            raise CalibrationFailed(problems, _kept(CALIBRATION, problems, context.workdir, calibration=True))
        self.operations = sorted(operations_called(journal))
        validators = {service: validator_for(service) for service in SERVICES}
        self.coverage = Coverage.documented(validators, self.operations)
        self.coverage.record(journal)

    def sweep(self) -> list[Plan]:
        return sweep_plans(
            list(self.coverage.cells), self.read_operations, self.cold_operations, relays=self.target.relays
        )

    @property
    def read_operations(self) -> frozenset[str]:
        return frozenset(
            operation.operation_id
            for service in SERVICES
            for operation in validator_for(service).iter_operations()
            if operation.method in ("GET", "HEAD")
        )

    def _call(self, context: FuzzContext, kills: tuple[int, ...] = ()) -> Run:
        """One run of the target (after `kills`: runs killed after that many exchanges, each restarted)."""
        started, loop_started = time.perf_counter(), self.loop.time()
        error: BaseException | None = None
        start = functools.partial(self.target.start, context)
        for kill in kills:
            error = error or killed_run(
                self.loop,
                start,
                self.world.faults,
                self.world.journal,
                kill,
                self.time_bound,
                shared_loop=self.virtual_time,
            )
        try:
            self.loop.run_until_complete(asyncio.wait_for(self.target.start(context), self.time_bound))
        except Exception as exc:  # anything the target lets escape is what the invariants judge
            error = error or exc
        run = Run(
            seconds=time.perf_counter() - started, error=error, loop_seconds=self.loop.time() - loop_started
        )
        if self.target.load_state is not None:
            try:
                run.state = self.target.load_state(context.workdir)
            except Exception as exc:  # a state that does not load is itself a finding
                run.state_error = f"{type(exc).__name__}: {exc}"
        return run

    def run_example(self, plan: Plan) -> Observation:
        self.examples += 1
        self.log.lines.clear()
        plan.prepare(self.world)
        context = self.new_context()
        warm = self._call(context) if plan.warm else None
        plan.begin(self.world)
        faulted = self._call(context, plan.kills)
        self.world.faults.clear()
        clean = self._call(context)
        # The entries as journaled: invariants and coverage read their fields, no body is parsed.
        journal = self.world.journal.entries()
        self.coverage.record(journal)
        return Observation(
            target=self.target,
            plan=plan,
            context=context,
            faulted=faulted,
            clean=clean,
            journal=journal,
            snapshot=self.world.snapshot(),
            time_bound=self.time_bound,
            core_users=self.core_users,
            warm=warm,
        )

    def keep_log(self, workdir: Path) -> None:
        """Write what the target logged during this example beside its files."""
        (workdir / "target.log").write_text("\n".join(self.log.lines) + "\n")


@dataclass
class Failure:
    plan: Plan
    problems: dict[str, list[str]]
    workdir: Path
    plan_file: Path
    swept: bool = False  # found by the sweep, which is the same every run
    calibration: bool = False  # found by the calibration runs, before any example

    def replay_command(self, target: str, options: str = "") -> str:
        """The command that runs this failure again; `options`: the mock's configuration flags."""
        start = f"contracts fuzz --target {shlex.quote(target)}{' ' + options if options else ''}"
        if self.swept:
            return f"{start} --sweep-only"
        return f"{start} --replay {shlex.quote(str(self.plan_file))}"


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


def _kept(
    plan: Plan,
    problems: dict[str, list[str]],
    workdir: Path,
    *,
    swept: bool = False,
    calibration: bool = False,
) -> Failure:
    """A Failure that outlives its session: the example's files copied out of the session's temporary root
    (removed at the end), its plan saved beside them."""
    kept = Path(tempfile.mkdtemp(prefix="contracts-fuzz-failure-"))
    if workdir.exists():
        shutil.copytree(workdir, kept, dirs_exist_ok=True)
    return Failure(plan, problems, kept, save_plan(plan, kept / PLAN_FILE), swept, calibration)


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
        return _kept(plan, problems, observation.workdir)
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
        return _kept(plan, raised.problems, workdir, swept=plan in swept)
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
