"""A fuzz session: the mock servers and the target's event loop, kept for many examples, and one example run
in them.

One example: reset the mock world to the plan's starting point, install the plan's faults, run the target,
clear the faults, run it again; the runner (`runner.py`) then checks every invariant on what was observed.
Before any example, two calibration runs without faults show which operations the target calls.

By default the target and the mock servers share one event loop on virtual time (`clock.py`): sleeps,
backoffs, timeouts and fault latencies cost no wall time. With `virtual_time=False` the mock serves from a
thread of its own and the target's loop keeps real time."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from contracts.coverage import Coverage, operations_called
from contracts.harness.fuzz.clock import virtual_loop
from contracts.harness.fuzz.invariants import Observation, Run, check_all
from contracts.harness.fuzz.kills import killed_run
from contracts.harness.fuzz.plan import SWEEP_SAID, Plan, save_plan, sweep_plans
from contracts.harness.fuzz.target import Account, FuzzContext, Target
from contracts.validation import validator_for
from mockgen.server import LOOP_FACTORY, MockServers
from mockgen.world import DEFAULT_USERS, MockConfig, World

SERVICES = ("letta", "matrix")
# The examples' working directories live in memory where the machine has a RAM filesystem: a target that
# fsyncs its state (as the reference bridge does, several times a run) otherwise waits on the disk for most
# of an example. A failing example's files are copied out to the ordinary temporary directory.
RAM_DIRECTORY = Path("/dev/shm")
CALIBRATION = Plan(agents=("calibration-one", "calibration-two"), said=SWEEP_SAID)
PLAN_FILE = "plan.json"
# The collector's thresholds while examples run (the default is 700, 10, 10). With the session's long-lived
# objects frozen too, the collector's time per bridge example fell from 1.3 to 0.4 ms (of about 23).
EXAMPLE_GC_THRESHOLD = (10_000, 10, 10)


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


class _CollectorTuning:
    """The garbage collector set for many short examples, and set back: what the session keeps for its
    whole life (specs, validators, the mock's apps, strategies) frozen out of every collection's walk, and
    the youngest generation collected less often."""

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None

    def start(self) -> None:
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gc.set_threshold(*EXAMPLE_GC_THRESHOLD)

    def stop(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None


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
        self._collector = _CollectorTuning()

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
        self._collector.stop()
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
            raise CalibrationFailed(problems, kept(CALIBRATION, problems, context.workdir, calibration=True))
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
        # Only after a first example: Hypothesis, on its first, checks that its random generator has a
        # referrer, which a freeze would hide from it.
        self._collector.start()
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


def kept(
    plan: Plan,
    problems: dict[str, list[str]],
    workdir: Path,
    *,
    swept: bool = False,
    calibration: bool = False,
) -> Failure:
    """A Failure that outlives its session: the example's files copied out of the session's temporary root
    (removed at the end), its plan saved beside them."""
    directory = Path(tempfile.mkdtemp(prefix="contracts-fuzz-failure-"))
    if workdir.exists():
        shutil.copytree(workdir, directory, dirs_exist_ok=True)
    return Failure(plan, problems, directory, save_plan(plan, directory / PLAN_FILE), swept, calibration)
