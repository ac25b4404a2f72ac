"""The long fuzz job as a pytest suite that shards with pytest-xdist: `pytest tests_fuzz -n N` spreads the
shards over N processes, each with its own mock servers on its own ports (and over machines, with xdist's
remote workers or one shard range per machine). Every shard writes its coverage; `contracts coverage
reports/fuzz-shards` merges them and gates.

Settings come from the environment: `CONTRACTS_FUZZ_TARGET` (default: the reference bridge),
`CONTRACTS_FUZZ_SHARDS` (4), `CONTRACTS_FUZZ_EXAMPLES` per shard (100), `CONTRACTS_FUZZ_SEED` (0; `random`
for unseeded shards that replay and keep failures in the example database, `CONTRACTS_HYPOTHESIS_DB`), and
`HYPOTHESIS_PROFILE` (`fuzz` under `make fuzz`) for the stateful machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from contracts.harness.fuzz.reporting import failure_text
from contracts.harness.fuzz.runner import FuzzSession, fuzz_in
from contracts.harness.fuzz.stateful import run_stateful
from contracts.harness.fuzz.target import load_target
from contracts.profiles import example_database, load_profile

load_profile()

TARGET = os.environ.get("CONTRACTS_FUZZ_TARGET", "letta_matrix_reference.bridge.target:fuzz_sync")
SHARDS = int(os.environ.get("CONTRACTS_FUZZ_SHARDS", "4"))
EXAMPLES = int(os.environ.get("CONTRACTS_FUZZ_EXAMPLES", "100"))
_SEED = os.environ.get("CONTRACTS_FUZZ_SEED", "0")
SEED = None if _SEED == "random" else int(_SEED)
SHARD_REPORTS = Path(__file__).resolve().parent.parent / "reports" / "fuzz-shards"


@pytest.fixture(scope="session")
def session() -> Iterator[FuzzSession]:
    """One mock per worker process (ports chosen by the OS), shared by the shards it runs."""
    with FuzzSession(load_target(TARGET)) as fuzz_session:
        yield fuzz_session


@pytest.mark.parametrize("shard", range(SHARDS))
def test_the_target_keeps_its_invariants(session: FuzzSession, shard: int) -> None:
    result = fuzz_in(
        session,
        examples=EXAMPLES,
        seed=None if SEED is None else SEED + shard,
        sweep=shard == 0,
        database=example_database() if SEED is None else None,
        progress=False,
    )
    result.coverage.write(SHARD_REPORTS / f"shard-{shard}")
    assert result.failure is None, failure_text(result)


def test_the_target_survives_the_state_machine(session: FuzzSession) -> None:
    run_stateful(session, settings(settings.default, stateful_step_count=12))
