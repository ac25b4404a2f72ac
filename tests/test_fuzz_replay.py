"""The fuzzer's plans as JSON files, replayed from them, and the two forms a target may take."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings

from contracts.coverage import Coverage
from contracts.harness.cli import main as contracts_main
from contracts.harness.fuzz import Account, FuzzContext
from contracts.harness.fuzz.plan import FaultSpec, Plan, load_plan, plans, save_plan
from contracts.harness.fuzz.runner import FuzzSession, Progress, fuzz
from contracts.harness.fuzz.target import Target, load_target
from contracts.validation import validator_for

BROKEN = "tests.fuzz_targets:crashes_on_envelope"
COPES = "tests.fuzz_targets:lists_agents"  # the plain form, (letta_url, matrix_url, workdir)
LOGS_IN = "tests.fuzz_targets:logs_in"  # the context form, with a check_converged that reads the context


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
        "said": [], "kills": [],
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
        ({"fuzz_plan": 1, "said": [{"room": 0, "speaker": "ghost", "text": "boo"}]}, "a said entry is"),
        ({"fuzz_plan": 1, "kills": [-1]}, "plan kills are request numbers"),
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


NEEDS_ITS_SERVER = "tests.fuzz_targets:needs_its_server"


def test_a_failed_calibration_is_reported_with_a_replay_and_the_options_configure_the_mock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report"
    run = [
        "fuzz",
        "--target",
        NEEDS_ITS_SERVER,
        "--examples",
        "0",
        "--no-sweep",
        "--quiet",
        "--threshold",
        "0",
    ]
    assert contracts_main([*run, "--report", str(report)]) == 1
    out = capsys.readouterr().out
    assert "the calibration failed after" in out
    assert "FAILED in the calibration (two runs without faults, before any example)" in out
    assert "written for oculair.example, served matrix.test" in out
    assert f"replay: contracts fuzz --target {NEEDS_ITS_SERVER} --replay {report / 'plan.json'}" in out
    assert "coverage:" not in out  # no coverage line, and no threshold to fail: nothing ran
    assert (report / "failure.txt").is_file()
    assert load_plan(report / "plan.json").agents == ("calibration-one", "calibration-two")
    # The replay fails the same way.
    assert contracts_main(["fuzz", "--target", NEEDS_ITS_SERVER, "--replay", str(report / "plan.json")]) == 1
    assert "FAILED in the calibration" in capsys.readouterr().out
    # A failure's replay repeats the mock's options; served what it was written for, the target passes.
    assert contracts_main([*run, "--server-name", "other.example", "--letta-token", ""]) == 1
    options = "--server-name other.example --letta-token ''"
    assert f"replay: contracts fuzz --target {NEEDS_ITS_SERVER} {options} --replay" in capsys.readouterr().out
    configured = ["--server-name", "oculair.example", "--letta-token", ""]
    assert contracts_main([*run, *configured]) == 0
    assert "invariants: all held" in capsys.readouterr().out


def test_the_progress_line_counts_the_sweep_and_says_when_shrinking_runs_past_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sizes: list[int] = []
    result = fuzz(
        load_target(COPES), examples=0, seed=1, progress=False, sweep_only=True, on_sweep=sizes.append
    )
    assert sizes == [result.swept]
    assert result.swept > 0
    meter = Progress(2)
    for _ in range(3):
        meter.tick()
    assert capsys.readouterr().err.splitlines()[-1].startswith("fuzz: 2/2 (+1 shrinking) examples")


def test_a_missing_target_module_hints_at_the_app_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert contracts_main(["fuzz", "--target", "mybot:target", "--app-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("contracts fuzz: No module named 'mybot' (looked in ")
    assert "--app-dir DIR" in err
