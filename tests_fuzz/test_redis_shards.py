"""Shards on an existing engine: `contracts fuzz` processes that share nothing but a real Redis server as
their example database. A failure one process found is what the next replays first, in each of its
workers, before it draws anything of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests_fuzz import redis_server

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = Path(sys.executable).with_name("contracts")
BROKEN = "tests.fuzz_targets:crashes_on_envelope"
RUN_TIMEOUT = 300.0


@pytest.fixture
def redis_url() -> Iterator[str]:
    with redis_server.running() as url:
        yield url


def _fuzz(database: str, report: Path, *options: str) -> tuple[int, dict[str, Any]]:
    """One `contracts fuzz` process of its own (its own mock, its own temporary files) on `database`: its
    exit code and its fuzz.json."""
    done = subprocess.run(
        [str(CONTRACTS), "fuzz", "--target", BROKEN, "--app-dir", str(ROOT), "--no-sweep", "--quiet",
         "--threshold", "0", "--database", database, "--report", str(report), *options],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=report.parent, check=False,
    )  # fmt: skip
    assert (report / "fuzz.json").is_file(), done.stdout + done.stderr
    summary: dict[str, Any] = json.loads((report / "fuzz.json").read_text(encoding="utf-8"))
    return done.returncode, summary


def _plan(report: Path) -> Any:
    return json.loads((report / "plan.json").read_text(encoding="utf-8"))


def test_a_failure_one_process_found_is_replayed_first_by_another_sharing_only_redis(
    redis_url: str, tmp_path: Path
) -> None:
    shared = f"{redis_url}/0"
    code, found = _fuzz(shared, tmp_path / "finder", "--examples", "60")
    assert code == 1
    assert found["failure"] is not None
    problems = found["failure"]["problems"]["no-unhandled-exception"]
    assert problems
    assert all("KeyError: 'agents'" in problem for problem in problems)

    # Zero examples of its own: whatever fails here came out of the shared database, in both workers.
    code, replayed = _fuzz(shared, tmp_path / "replayer", "--examples", "0", "--workers", "2")
    assert code == 1
    assert replayed["failure"] is not None
    assert replayed["failure"]["problems"] == found["failure"]["problems"]
    assert _plan(tmp_path / "replayer") == _plan(tmp_path / "finder")

    # The control: the same server, another database number, nothing kept there, nothing fails.
    code, fresh = _fuzz(f"{redis_url}/1", tmp_path / "fresh", "--examples", "0", "--workers", "2")
    assert (code, fresh["failure"]) == (0, None)
