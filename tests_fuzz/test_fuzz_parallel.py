"""`contracts fuzz --workers N`: the examples are shared out over worker processes, each with its own mock;
the sweep runs once, coverage is merged and a worker's failure comes back with its saved plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.harness.fuzz.parallel import fuzz_parallel
from contracts.harness.fuzz.plan import load_plan
from contracts.harness.fuzz.runner import fuzz
from contracts.harness.fuzz.target import load_target

COPES = "tests.fuzz_targets:lists_agents"
BUGGY = "tests.fuzz_targets:crashes_on_envelope"


def test_workers_share_the_examples_and_merge_coverage() -> None:
    result = fuzz_parallel(COPES, examples=7, workers=2, seed=5, time_bound=20.0, progress=False, sweep=False)
    assert result.failure is None
    assert (result.examples, result.swept) == (7, 0)
    assert result.operations == ["listAgents"]
    assert result.coverage.exercised > 0


def test_a_worker_whose_share_is_nothing_runs_nothing() -> None:
    result = fuzz_parallel(COPES, examples=1, workers=2, seed=5, time_bound=20.0, progress=False, sweep=False)
    assert result.failure is None
    assert result.examples == 1


def test_the_sweep_runs_once_over_all_workers_and_the_progress_counts_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = fuzz_parallel(COPES, examples=4, workers=2, seed=5, time_bound=20.0, progress=True)
    assert result.failure is None
    assert result.swept > 0
    assert result.examples == 4 + result.swept
    counts = [line.split()[1].split("/") for line in capsys.readouterr().err.splitlines()]
    assert counts, "no progress line"
    assert all(int(done) <= int(total) for done, total in counts)  # not 220/200
    assert counts[-1] == [str(result.examples)] * 2


def test_a_failure_in_a_worker_comes_back_and_is_saved_in_the_database(tmp_path: Path) -> None:
    database = tmp_path / "examples"
    result = fuzz_parallel(
        BUGGY, examples=40, workers=2, seed=None, time_bound=20.0, progress=False, sweep=False,
        database=str(database),
    )  # fmt: skip
    assert result.failure is not None
    # Shrinking may stop at either minimal world that shows the bug: the envelope format, or the array
    # format with a fault that serves an envelope; both raise the planted KeyError.
    problems = result.failure.problems["no-unhandled-exception"]
    assert problems
    assert all("KeyError: 'agents'" in problem for problem in problems)
    assert result.failure.plan_file.is_file()
    replayed = fuzz(load_target(BUGGY), replay=load_plan(result.failure.plan_file), progress=False)
    assert replayed.failure is not None
    assert replayed.failure.plan == result.failure.plan
    assert any(path.is_file() for path in database.rglob("*"))
