"""The fuzzer on two tiny targets (tests/fuzz_targets.py): a planted bug is caught, shrunk and replayed;
a target that copes passes with full coverage; the stateful machine judges rightly (the invariants on
their own: test_fuzz_invariants.py)."""

from __future__ import annotations

import gc
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import InMemoryExampleDatabase

from contracts.harness.cli import main as contracts_main
from contracts.harness.fuzz.invariants import INVARIANTS, Run
from contracts.harness.fuzz.plan import SWEEP_AGENTS, FaultSpec, Plan, load_plan
from contracts.harness.fuzz.runner import FuzzSession, InvariantBroken, fuzz
from contracts.harness.fuzz.session import EXAMPLE_GC_THRESHOLD
from contracts.harness.fuzz.stateful import machine_for, run_stateful
from contracts.harness.fuzz.target import Target, load_target
from tests import fuzz_targets

BROKEN = "tests.fuzz_targets:crashes_on_envelope"
COPES = "tests.fuzz_targets:lists_agents"  # the plain form, (letta_url, matrix_url, workdir)
LOGS_IN = "tests.fuzz_targets:logs_in"  # the context form, with a check_converged that reads the context


def test_the_sweep_catches_a_broken_target_first_and_replays_it() -> None:
    result = fuzz(load_target(BROKEN), examples=30, seed=1, progress=False)
    assert result.failure is not None
    assert result.failure.swept
    assert result.failure.plan == Plan(agents=SWEEP_AGENTS, agents_format="envelope", messages_format="items")
    assert result.failure.replay_command(BROKEN) == f"contracts fuzz --target {BROKEN} --sweep-only"
    replayed = fuzz(load_target(BROKEN), examples=30, sweep_only=True, progress=False)
    assert replayed.failure is not None
    assert replayed.failure.plan == result.failure.plan


def test_random_examples_catch_a_broken_target_and_shrink_it_to_a_minimal_plan() -> None:
    result = fuzz(load_target(BROKEN), examples=30, seed=1, progress=False, sweep=False)
    assert result.failure is not None
    # The minimal world that shows the bug: no agents, no faults, the envelope list format.
    assert result.failure.plan == Plan(agents=(), agents_format="envelope")
    assert result.failure.problems == {
        "no-unhandled-exception": [
            "on its first run (no faults), the target raised builtins.KeyError: 'agents'",
            "on its second run (no faults), the target raised builtins.KeyError: 'agents'",
        ]
    }
    assert result.failure.plan_file.is_file()
    replayed = fuzz(load_target(BROKEN), replay=load_plan(result.failure.plan_file), progress=False)
    assert replayed.failure is not None
    assert replayed.failure.plan == result.failure.plan


def test_several_failing_sweep_plans_report_the_first_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every documented error of listAgents fails: Hypothesis raises them together, as an ExceptionGroup.
    target = "tests.fuzz_targets:raises_on_errors"
    code = contracts_main(["fuzz", "--target", target, "--sweep-only", "--quiet", "--report", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "with faults, the target raised builtins.RuntimeError: listAgents answered 401" in out
    assert "fault: listAgents: 401 None x1" in out
    assert (tmp_path / "failure.txt").read_text().startswith("FAILED")
    [workdir] = re.findall(r"from that example: (\S+)", out)
    assert Path(workdir, "target.log").is_file()


def test_a_sweep_failure_prints_its_replay_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert contracts_main(["fuzz", "--target", BROKEN, "--sweep-only", "--quiet"]) == 1
    assert f"  replay: contracts fuzz --target {BROKEN} --sweep-only" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "banner"),
    [
        (["--sweep-only"], "the sweep only, 1 worker(s)"),
        (["--no-sweep", "--examples", "0"], "0 random examples, 1 worker(s)"),
        (["--examples", "0"], "the sweep and 0 random examples, 1 worker(s)"),
    ],
)
def test_the_banner_says_what_runs_and_zero_examples_means_none(
    options: list[str], banner: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = contracts_main(["fuzz", "--target", COPES, "--quiet", "--threshold", "0", "--seed", "1", *options])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{COPES}, {banner}, seed 1" in out
    swept = 0 if "--no-sweep" in options else 6  # the two list formats and listAgents' four errors
    assert f"  {swept} examples ({swept} of them the sweep)" in out


def test_a_negative_number_of_examples_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert contracts_main(["fuzz", "--target", COPES, "--examples", "-1"]) == 2
    assert "--examples must be 0 or more, not -1" in capsys.readouterr().err


@pytest.mark.usefixtures("restored_sys_path")
def test_the_example_database_keeps_a_failure_and_replays_it_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = ["--database", str(tmp_path / "examples")]
    arguments = ["fuzz", "--target", BROKEN, "--no-sweep", "--quiet", *database]
    assert contracts_main([*arguments, "--examples", "30"]) == 1
    assert "example database" in capsys.readouterr().out
    # Alone, a single example is the simplest plan (bare array lists), which passes; with the database,
    # the failure it kept runs first.
    assert contracts_main([*arguments, "--examples", "1"]) == 1
    assert "Letta lists: agents envelope" in capsys.readouterr().out
    # Filed under the target's name: another target finds nothing of it.
    assert contracts_main(["fuzz", "--target", COPES, "--no-sweep", "--quiet", "--examples", "1",
                           "--threshold", "0", *database]) == 0  # fmt: skip


def test_a_seed_and_a_database_are_refused_together(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["fuzz", "--target", COPES, "--seed", "1", "--database", "examples"]
    assert contracts_main(arguments) == 2
    assert "--seed and --database exclude each other" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exclude each other"):
        fuzz(load_target(COPES), examples=1, seed=1, database=InMemoryExampleDatabase(), progress=False)


@pytest.fixture
def restored_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # `contracts fuzz --app-dir` prepends to it


@pytest.mark.usefixtures("restored_sys_path")
def test_the_cli_prints_a_replay_command_that_reproduces_the_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [
        "--target",
        BROKEN,
        "--examples",
        "30",
        "--seed",
        "1",
        "--no-sweep",
        "--report",
        str(tmp_path),
    ]
    code = contracts_main(["fuzz", "--quiet", *arguments])
    out = capsys.readouterr().out
    assert code == 1
    assert "invariant no-unhandled-exception:" in out
    assert "Letta lists: agents envelope" in out
    [command] = re.findall(r"replay: (contracts fuzz .*)", out)
    assert (tmp_path / "failure.txt").read_text().startswith("FAILED")
    report = json.loads((tmp_path / "fuzz.json").read_text())
    assert report["failure"]["replay"] == command
    assert report["seed"] == 1

    assert contracts_main(shlex.split(command)[1:]) == 1
    replay_out = capsys.readouterr().out
    assert "replaying one example, 1 worker(s)" in replay_out
    assert "on its second run (no faults), the target raised builtins.KeyError: 'agents'" in replay_out
    # The same example against the fixed target: the replay passes and says so.
    assert contracts_main(shlex.split(command.replace(BROKEN, COPES))[1:]) == 0
    assert "the replayed example passed" in capsys.readouterr().out
    # A file that holds no plan is a usage error, not a crash.
    (tmp_path / "garbage.json").write_text('{"agents": "AXicY2BgAAAABAAB"}')
    assert contracts_main(["fuzz", "--target", COPES, "--replay", str(tmp_path / "garbage.json")]) == 2
    assert "garbage.json is not a fuzz plan" in capsys.readouterr().err


@pytest.mark.usefixtures("restored_sys_path")
def test_a_target_that_copes_passes_with_full_coverage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = contracts_main(
        ["fuzz", "--target", COPES, "--examples", "60", "--seed", "1", "--quiet", "--report", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "invariants: all held" in out
    coverage = json.loads((tmp_path / "coverage.json").read_text())
    assert coverage["ratio"] == 1.0
    cells = {(row["operation"], row["status"], row["variant"]) for row in coverage["matrix"]}
    assert {
        ("listAgents", 200, "bare array"),
        ("listAgents", 200, "envelope"),
        ("listAgents", 401, None),
    } <= cells
    assert all(row["hits"] > 0 for row in coverage["matrix"])
    markdown = (tmp_path / "coverage.md").read_text()
    assert f"**{len(cells)} of {len(cells)} cells exercised (100%).**" in markdown


@pytest.mark.usefixtures("restored_sys_path")
def test_coverage_below_the_threshold_fails_and_names_what_was_missed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = contracts_main(
        ["fuzz", "--target", COPES, "--examples", "1", "--seed", "1", "--quiet", "--no-sweep"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "invariants: all held" in out
    assert "coverage below the threshold; never exercised:" in out
    assert "letta listAgents 500" in out


def test_nothing_to_cover_fails_the_coverage_gates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "tests.fuzz_targets:calls_nothing"
    assert (
        contracts_main(["fuzz", "--target", target, "--quiet", "--examples", "0", "--report", str(tmp_path)])
        == 1
    )
    out = capsys.readouterr().out
    assert "invariants: all held" in out
    assert "nothing to cover: the target called no documented operation" in out
    assert contracts_main(["coverage", str(tmp_path)]) == 1
    assert "nothing to cover: the reports hold no cells" in capsys.readouterr().out
    # A shard report that is not there is a mistake in the command, not a shard without coverage.
    assert contracts_main(["coverage", str(tmp_path), str(tmp_path / "missing")]) == 2
    assert f"no such file or directory: {tmp_path / 'missing'}" in capsys.readouterr().err


def test_an_unknown_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert contracts_main(["fuzz", "--target", "tests.fuzz_targets"]) == 2
    assert "a target is named module:callable" in capsys.readouterr().err
    assert contracts_main(["fuzz", "--target", "tests.fuzz_targets:nothing_here"]) == 2
    assert "has no callable 'nothing_here'" in capsys.readouterr().err


def test_a_fault_plan_reads_as_a_person_would_write_it() -> None:
    plan = Plan(
        agents=("Ada",),
        agents_format="envelope",
        faults=(
            FaultSpec("listAgents", 500, None, {"detail": "boom"}, True, times=2, after=1),
            FaultSpec("createRoom", drop_connection=True),
            FaultSpec("register", 429, retry_after_ms=10),
        ),
    )
    assert plan.describe().splitlines() == [
        "agents: 'Ada'",
        "Letta lists: agents envelope, messages array",
        "fault: listAgents: 500 {'detail': 'boom'} x2 after 1",
        "fault: createRoom: drop the connection x1",
        "fault: register: 429 retry_after_ms=10 x1",
    ]


def test_a_session_tunes_the_collector_for_its_examples_and_hands_it_back() -> None:
    threshold = gc.get_threshold()
    with FuzzSession(load_target(COPES), time_bound=10) as session:
        session.run_example(Plan())
        assert gc.get_threshold() == EXAMPLE_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0


@pytest.fixture(scope="module")
def copes_session() -> Iterator[FuzzSession]:
    with FuzzSession(load_target(COPES), time_bound=10) as session:
        yield session


# Hypothesis starts with tiny examples: unseeded, 4 examples drew no sync in 22 runs of 100, 30 in 0 of 100.
STATEFUL = settings(
    max_examples=30, stateful_step_count=8, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


def test_the_stateful_machine_runs_a_target_that_copes(copes_session: FuzzSession) -> None:
    syncs_before = copes_session.world.journal.last_seq
    run_stateful(copes_session, STATEFUL)
    assert copes_session.world.journal.last_seq > syncs_before  # the machine did drive the target


@pytest.fixture(scope="module")
def broken_session() -> Iterator[FuzzSession]:
    with FuzzSession(load_target(BROKEN), time_bound=10) as session:
        yield session


def test_a_sync_in_the_format_the_bug_needs_breaks_an_invariant(broken_session: FuzzSession) -> None:
    machine: Any = machine_for(broken_session)()  # its rules are made per session, so mypy cannot see them
    machine.start_formats("array", "array")
    machine.sync()
    machine.change_formats("envelope", "array")
    with pytest.raises(InvariantBroken, match="KeyError: 'agents'"):
        machine.sync()


def test_the_stateful_machine_judges_each_syncs_exchanges_against_the_contract() -> None:
    with FuzzSession(load_target("tests.fuzz_targets:bad_query_on_envelope"), time_bound=10) as session:
        machine: Any = machine_for(session)()
        machine.start_formats("array", "array")
        machine.sync()
        machine.change_formats("envelope", "array")
        with pytest.raises(InvariantBroken, match=r"requests-follow-contract: .*query parameter .limit."):
            machine.sync()


def test_the_stateful_machine_checks_invariants_its_user_registered(
    copes_session: FuzzSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(INVARIANTS, "agents-never-vanish", lambda obs: ["an agent vanished"])
    machine: Any = machine_for(copes_session)()
    with pytest.raises(InvariantBroken, match="agents-never-vanish: an agent vanished"):
        machine.sync()


def test_the_stateful_search_finds_the_planted_bug(broken_session: FuzzSession) -> None:
    # Half the examples start in the envelope format; one of them syncing is all the search needs. Unseeded,
    # these settings found the bug in 200 runs of 200 (50 examples: 198 of 200).
    with pytest.raises(InvariantBroken, match="KeyError: 'agents'"):
        run_stateful(broken_session, settings(STATEFUL, max_examples=100))


def test_a_targets_sleeps_pass_on_the_loops_clock_not_the_wall_clock() -> None:
    """Virtual time: the target sleeps 3 x 1 s in each run; its loop's clock counts them, the wall clock
    does not wait for them (a run of real sleeps could not take less wall time than they add up to)."""
    runs: list[Run] = []
    result = fuzz(
        load_target("tests.fuzz_targets:backs_off"),
        replay=Plan(agents=("Ada",), warm=True),
        progress=False,
        on_example=lambda observation: runs.extend(run for _, run in observation.runs()),
    )
    assert result.failure is None
    assert len(runs) == 3
    slept = fuzz_targets.ATTEMPTS * fuzz_targets.BACKOFF_SECONDS
    for run in runs:
        assert round(run.loop_seconds, 6) >= slept  # the loop's clock sums in floats
        assert run.seconds < slept


@pytest.mark.parametrize(("flag", "virtual"), [([], True), (["--real-time"], False)])
def test_the_cli_fuzzes_on_virtual_time_unless_told_real_time(
    flag: list[str], virtual: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contracts.harness.fuzz import reporting

    asked: list[bool] = []

    def fuzz_on(target: Target, *, virtual_time: bool, **options: Any) -> Any:
        asked.append(virtual_time)
        return fuzz(target, virtual_time=virtual_time, **options)

    monkeypatch.setattr(reporting, "fuzz", fuzz_on)
    arguments = ["fuzz", "--target", COPES, "--quiet", "--seed", "1", "--no-sweep", "--examples", "1"]
    assert contracts_main([*arguments, "--threshold", "0", *flag]) == 0
    assert asked == [virtual]


def test_a_target_that_never_returns_is_cut_at_the_time_bound_on_the_loops_clock() -> None:
    """On virtual time the bound is the loop's: the wait for nothing ends the moment nothing else can run,
    with the loop's clock at the bound, and the wall clock nowhere near it."""
    runs: list[Run] = []
    result = fuzz(
        load_target("tests.fuzz_targets:never_returns"),
        replay=Plan(),
        time_bound=60.0,
        progress=False,
        on_example=lambda observation: runs.extend(run for _, run in observation.runs()),
    )
    assert result.failure is not None
    assert [type(run.error) for run in runs] == [TimeoutError, TimeoutError]
    for run in runs:
        assert round(run.loop_seconds, 6) >= 60.0
        assert run.seconds < 60.0
