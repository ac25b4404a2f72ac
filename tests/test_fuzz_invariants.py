"""The fuzzer's invariants, judged on hand-made observations: each registered invariant holds for a quiet
run and names what broke when it does not; expected exceptions are excused only while faults are
installed; a calibration that fails says so and leaves nothing behind."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from contracts.harness.fuzz import Account, FuzzContext
from contracts.harness.fuzz.invariants import INVARIANTS, Observation, Run, check_all
from contracts.harness.fuzz.plan import FaultSpec, Plan
from contracts.harness.fuzz.runner import FuzzSession, InvariantBroken
from contracts.harness.fuzz.target import Target, fuzz_target
from contracts.validation import Violation
from mockgen.journal import Entry, Journal


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
        "no-unhandled-exception": ["without faults, the target raised tests.test_fuzz_invariants.Refused: no"]
    }


def test_a_sync_of_the_state_machine_is_one_run_named_for_its_faults() -> None:
    """A state machine's sync is faulted or clean, never both: the absent run is None, not a run that did
    not happen, so what is promised after a clean run is not asked after a faulted one."""
    target = Target(
        "t", _nothing, expected_exceptions=(Refused,), check_converged=lambda *_: ["not converged"]
    )
    faulted = Observation(
        target=target, plan=FAULTED, context=CONTEXT, faulted=Run(0.1, error=Refused("no")), clean=None,
        journal=[], snapshot={"rooms": []}, time_bound=1.0,
    )  # fmt: skip
    assert [label for label, _ in faulted.runs()] == ["faulted"]
    assert not faulted.ended_clean
    assert check_all(faulted) == {}
    clean = Observation(
        target=target, plan=Plan(), context=CONTEXT, faulted=None, clean=Run(0.1),
        journal=[], snapshot={"rooms": []}, time_bound=1.0,
    )  # fmt: skip
    assert [label for label, _ in clean.runs()] == ["first"]
    assert check_all(clean) == {"converged-after-clean-run": ["not converged"]}


def test_runs_of_a_plan_without_faults_are_named_by_their_order_and_nothing_excuses_them() -> None:
    target = Target("t", _nothing, expected_exceptions=(Refused,))
    observation = _observation(plan=Plan(), target=target, faulted=Run(0.1, error=Refused("no")))
    assert check_all(observation) == {
        "no-unhandled-exception": [
            "on its first run (no faults), the target raised tests.test_fuzz_invariants.Refused: no"
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
