"""The fuzzer on two tiny targets (tests/fuzz_targets.py): a planted bug is caught, shrunk and replayed;
a target that copes passes with full coverage; the invariants and the stateful machine judge rightly."""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.database import InMemoryExampleDatabase

from contracts.coverage import Coverage
from contracts.harness.cli import main as contracts_main
from contracts.harness.fuzz import Account, FuzzContext
from contracts.harness.fuzz.invariants import INVARIANTS, Observation, Run, check_all
from contracts.harness.fuzz.plan import SWEEP_AGENTS, FaultSpec, Plan, load_plan, plans, save_plan
from contracts.harness.fuzz.runner import FuzzSession, InvariantBroken, fuzz
from contracts.harness.fuzz.stateful import machine_for, run_stateful
from contracts.harness.fuzz.target import Target, fuzz_target, load_target
from contracts.validation import Violation, validator_for
from mockgen.journal import Entry, Journal

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


async def _nothing(letta_url: str, matrix_url: str, workdir: Path) -> None:
    return None


FAULTED = Plan(faults=(FaultSpec("listAgents", 500),))


CONTEXT = FuzzContext(
    letta_url="http://127.0.0.1:1", matrix_url="http://127.0.0.1:2", workdir=Path("/nonexistent"),
    letta_token="token", server_name="mock", admin=Account("admin", "pw"), bot=Account("bot", "pw"),
)  # fmt: skip


def _observation(
    *,
    plan: Plan = FAULTED,
    target: Target | None = None,
    faulted: Run | None = None,
    clean: Run | None = None,
    journal: list[Entry] | None = None,
    rooms: list[dict[str, str]] | None = None,
) -> Observation:
    return Observation(
        target=target or Target("t", _nothing),
        plan=plan,
        context=CONTEXT,
        faulted=faulted or Run(0.1),
        clean=clean or Run(0.1),
        journal=journal or [],
        snapshot={"rooms": rooms or []},
        time_bound=1.0,
        core_users=frozenset({"@admin:mock"}),
    )


def test_every_registered_invariant_holds_for_a_quiet_run() -> None:
    assert check_all(_observation()) == {}
    assert set(INVARIANTS) >= {
        "no-unhandled-exception",
        "requests-follow-contract",
        "mock-answers-follow-contract",
        "state-loadable",
        "state-keeps-entries",
        "converged-after-clean-run",
        "no-duplicate-rooms",
        "within-time-bound",
    }


class Refused(Exception):
    pass


def test_expected_exceptions_are_allowed_only_while_faults_are_installed() -> None:
    target = Target("t", _nothing, expected_exceptions=(Refused,))
    assert check_all(_observation(target=target, faulted=Run(0.1, error=Refused("no")))) == {}
    found = check_all(_observation(target=target, clean=Run(0.1, error=Refused("no"))))
    assert found == {
        "no-unhandled-exception": ["without faults, the target raised tests.test_fuzz.Refused: no"]
    }


def test_runs_of_a_plan_without_faults_are_named_by_their_order_and_nothing_excuses_them() -> None:
    target = Target("t", _nothing, expected_exceptions=(Refused,))
    observation = _observation(plan=Plan(), target=target, faulted=Run(0.1, error=Refused("no")))
    assert check_all(observation) == {
        "no-unhandled-exception": [
            "on its first run (no faults), the target raised tests.test_fuzz.Refused: no"
        ]
    }
    observation.warm = Run(0.1)
    assert [label for label, _ in observation.runs()] == ["first", "second", "third"]


async def _raises(letta_url: str, matrix_url: str, workdir: Path) -> None:
    raise RuntimeError("no configuration")


def test_a_failed_calibration_says_so_and_leaves_nothing_behind() -> None:
    threads = set(threading.enumerate())
    session = FuzzSession(Target("t", _raises))
    with (
        pytest.raises(InvariantBroken, match=r"on its first run \(no faults\), the target raised builtins"),
        session,
    ):
        pytest.fail("the session started although its calibration failed")
    assert session.log not in logging.getLogger().handlers
    assert not [thread for thread in threading.enumerate() if thread not in threads]
    assert session.loop.is_closed()
    assert not session.root.exists()


BAD_PRESET = Violation("request", "createRoom", "request body", "/preset", "enum", "one of ...", "'x'")


def _entry(method: str, path: str, status: int, *violations: Violation) -> Entry:
    """A journal entry as the mock writes one."""
    return Journal().record(
        time=0.0, service="matrix", operation="createRoom", method=method, path=path, query="", user=None,
        request_raw=b"{}", status=status, response_raw=b"", duration_ms=0.0, fault=None, variant=None,
        violations=violations,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        pytest.param(
            _observation(clean=Run(1.5)),
            {"within-time-bound": ["the clean run took 1.5 s (bound 1 s)"]},
            id="time-bound",
        ),
        pytest.param(
            _observation(faulted=Run(0.1, state={"a": 1, "b": 2}), clean=Run(0.1, state={"a": 1})),
            {"state-keeps-entries": ["the clean run lost persisted entries: b"]},
            id="lost-entry",
        ),
        pytest.param(
            _observation(faulted=Run(0.1, state_error="JSONDecodeError: Expecting value")),
            {
                "state-loadable": [
                    "after the faulted run the persisted state did not load: JSONDecodeError: Expecting value"
                ]
            },
            id="unloadable",
        ),
        pytest.param(
            _observation(
                rooms=[{"creator": "@a:mock"}, {"creator": "@a:mock"}, {"creator": "@admin:mock"}] * 1
            ),
            {"no-duplicate-rooms": ["@a:mock created 2 rooms"]},
            id="duplicate-rooms",
        ),
        pytest.param(
            _observation(journal=[_entry("POST", "/_matrix/client/v3/createRoom", 400, BAD_PRESET)]),
            {
                "requests-follow-contract": [
                    "POST /_matrix/client/v3/createRoom: createRoom: request body at /preset: "
                    "expected one of ..., got 'x'"
                ]
            },
            id="bad-request",
        ),
    ],
)
def test_each_invariant_names_what_broke(observation: Observation, expected: dict[str, list[str]]) -> None:
    assert check_all(observation) == expected


def test_converged_is_asked_only_after_a_clean_run_that_did_not_raise() -> None:
    @fuzz_target(check_converged=lambda snapshot, workdir: ["agent x has no room"])
    async def target(letta_url: str, matrix_url: str, workdir: Path) -> None:
        return None

    declared = Target("t", target, check_converged=target.check_converged)  # type: ignore[attr-defined]
    assert check_all(_observation(target=declared)) == {"converged-after-clean-run": ["agent x has no room"]}
    assert "converged-after-clean-run" not in check_all(
        _observation(target=declared, clean=Run(0.1, error=RuntimeError("boom")))
    )


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


# -- plans saved as JSON, and replayed from their file

DOCUMENTED = list(Coverage.documented({s: validator_for(s) for s in ("letta", "matrix")}).cells)
READS = frozenset(
    operation.operation_id
    for service in ("letta", "matrix")
    for operation in validator_for(service).iter_operations()
    if operation.method in ("GET", "HEAD")
)


@settings(max_examples=100)
@given(plan=plans(DOCUMENTED, READS))
def test_every_plan_survives_its_json_file(plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = save_plan(plan, tmp_path_factory.getbasetemp() / "round-trip" / "plan.json")
    assert load_plan(path) == plan


def test_a_plan_file_reads_as_written_and_refuses_what_is_not_a_plan() -> None:
    plan = Plan(agents=("Ada",), faults=(FaultSpec("listAgents", 500, None, {"detail": "boom"}, True),))
    assert plan.to_json() == {
        "fuzz_plan": 1, "agents": ["Ada"], "agents_format": "array", "messages_format": "array",
        "warm": False,
        "faults": [
            {"operation": "listAgents", "status": 500, "variant": None, "body": {"detail": "boom"},
             "has_body": True, "times": 1, "after": 0, "latency_ms": 0, "drop_connection": False,
             "retry_after_ms": None},
        ],
    }  # fmt: skip
    # Left out, a field takes its default.
    assert Plan.from_json({"fuzz_plan": 1, "faults": [{"operation": "listAgents", "status": 500}]}) == Plan(
        faults=(FaultSpec("listAgents", 500),)
    )
    for data, refusal in [
        ({"fuzz_plan": 2}, "plan format 2 is not 1"),
        ({"agents": []}, "a plan needs fuzz_plan"),
        ({"fuzz_plan": 1, "agent": []}, "a plan has no field agent"),
        ({"fuzz_plan": 1, "faults": [{"status": 500}]}, "a fault needs operation"),
        ({"fuzz_plan": 1, "faults": [{"operation": "x", "times": True}]}, "fault times must be int"),
        ({"fuzz_plan": 1, "agents": [1]}, "plan agents must be names"),
    ]:
        with pytest.raises(ValueError, match=refusal):
            Plan.from_json(data)


def test_a_replay_runs_exactly_its_plan_with_the_faults_then_without() -> None:
    plan = Plan(agents=("Ada",), faults=(FaultSpec("listAgents", 500),))
    result = fuzz(load_target(COPES), replay=plan, progress=False)
    assert (result.examples, result.swept, result.replayed, result.failure) == (1, 0, True, None)
    hits = result.coverage.cells
    assert hits[("letta", "listAgents", 500, None)] == 1  # the faulted run met the fault
    # The clean run did not: two pages, Ada's and the empty one after it.
    assert hits[("letta", "listAgents", 200, "bare array")] == 2


def test_the_cli_replays_a_plan_file_and_speaks_only_of_that_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save_plan(Plan(agents=("Ada",), faults=(FaultSpec("listAgents", 500),)), tmp_path / "mine.json")
    target = "tests.fuzz_targets:raises_on_errors"
    report = tmp_path / "report"
    code = contracts_main(["fuzz", "--target", target, "--replay", str(path), "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{target}, replaying one example, 1 worker(s), plan {path}" in out
    assert "the replayed example ran in" in out
    assert "with faults, the target raised builtins.RuntimeError: listAgents answered 500" in out
    assert "  the replayed plan:\n    agents: 'Ada'" in out
    assert "examples (" not in out
    assert "coverage:" not in out
    assert "seed" not in out
    assert load_plan(report / "plan.json") == load_plan(path)
    assert f"replay: contracts fuzz --target {target} --replay {report / 'plan.json'}" in out
    # Without a report, the replay command points at the file replayed.
    assert contracts_main(["fuzz", "--target", target, "--replay", str(path), "--quiet"]) == 1
    assert f"replay: contracts fuzz --target {target} --replay {path}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        (["--seed", "1"], "--replay runs the plan in its file alone: it takes no --seed and no --database"),
        (["--database", "examples"], "it takes no --seed and no --database"),
    ],
)
def test_a_replay_takes_no_seed_and_no_database(
    options: list[str], refusal: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save_plan(Plan(), tmp_path / "plan.json")
    assert contracts_main(["fuzz", "--target", COPES, "--replay", str(path), *options]) == 2
    assert refusal in capsys.readouterr().err


def test_a_replay_of_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert contracts_main(["fuzz", "--target", COPES, "--replay", str(tmp_path / "gone.json")]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_a_replayed_plan_the_mock_refuses_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = save_plan(Plan(faults=(FaultSpec("noSuchOperation", 500),)), tmp_path / "plan.json")
    assert contracts_main(["fuzz", "--target", COPES, "--replay", str(path)]) == 2
    assert "the mock refuses the plan: operation 'noSuchOperation' is in neither" in capsys.readouterr().err


# -- the two forms of a target


def test_the_form_of_a_target_is_read_from_its_signature(capsys: pytest.CaptureFixture[str]) -> None:
    assert not load_target(COPES).takes_context
    assert load_target(LOGS_IN).takes_context
    assert contracts_main(["fuzz", "--target", "tests.fuzz_targets:takes_two"]) == 2
    assert (
        "fuzz target tests.fuzz_targets:takes_two takes (letta_url: 'str', matrix_url: 'str'): "
        "a target takes one parameter (a FuzzContext) or three (letta_url, matrix_url, workdir)"
    ) in capsys.readouterr().err

    async def keyword_only(*, context: FuzzContext) -> None:
        return None

    with pytest.raises(ValueError, match="takes one parameter"):
        Target("t", keyword_only)  # type: ignore[arg-type]  # mypy sees it too; this is the run-time check


def test_a_target_in_the_context_form_gets_the_mocks_token_and_accounts() -> None:
    # Credentials the mock did not know would make the runs without faults raise (and the convergence
    # check, handed the context too, looks the accounts up in the world).
    result = fuzz(load_target(LOGS_IN), examples=10, seed=1, progress=False)
    assert result.failure is None, result.failure
    assert result.operations == ["listAgents", "login"]
    assert result.coverage.ratio == 1.0


def test_the_context_names_what_the_session_serves() -> None:
    seen: list[FuzzContext] = []

    async def record(context: FuzzContext) -> None:
        seen.append(context)

    with FuzzSession(Target("t", record)) as session:  # its calibration runs the target twice
        letta, matrix = session.servers.endpoints.letta, session.servers.endpoints.matrix
    first, second = seen
    assert first == second  # one example: the same context, the same workdir
    assert (first.letta_url, first.matrix_url) == (letta, matrix)
    assert (first.letta_token, first.server_name) == ("mock-letta-token", "matrix.test")
    assert (first.admin, first.bot) == (Account("admin", "admin_password"), Account("letta", "letta"))
    assert first.user_id(first.bot) == "@letta:matrix.test"
    assert "admin_password" not in repr(first)
    assert "mock-letta-token" not in repr(first)
