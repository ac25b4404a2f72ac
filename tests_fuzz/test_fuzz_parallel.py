"""`contracts fuzz --workers N`: the examples are shared out over worker processes in chunks, each worker with
its own mock; the sweep runs once, coverage is merged, a worker's failure comes back with its saved plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.harness.fuzz.parallel import MIN_CHUNK, chunk_sizes, fuzz_parallel
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


def test_a_seeded_run_runs_the_same_plans_whichever_worker_takes_which_chunk() -> None:
    runs = [
        fuzz_parallel(COPES, examples=30, workers=2, seed=9, time_bound=20.0, progress=False, sweep=False)
        for _ in range(2)
    ]
    assert [run.examples for run in runs] == [30, 30]
    assert runs[0].coverage.cells == runs[1].coverage.cells


@pytest.mark.parametrize(("examples", "workers"), [(1000, 2), (1, 2), (57, 3), (10, 4)])
def test_chunks_hold_every_example_and_shrink_towards_the_end(examples: int, workers: int) -> None:
    sizes = chunk_sizes(examples, workers)
    assert sum(sizes) == examples
    assert sizes == sorted(sizes, reverse=True)
    assert all(size >= MIN_CHUNK for size in sizes[:-1])


def test_no_examples_is_an_empty_chunk_for_each_worker() -> None:
    assert chunk_sizes(0, 3) == [0, 0, 0]  # each worker replays the example database


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
