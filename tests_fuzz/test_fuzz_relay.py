"""The relay invariants bite: a relay that saves its sync token before answering the batch, and one that
relays the bot's own messages, are each caught by random plans (people talking, faults, kills) and
shrunk to a plan that shows just the bug."""

from __future__ import annotations

from typing import Any

from hypothesis import settings

from contracts.harness.fuzz.plan import PERSON, FaultSpec, Said, load_plan
from contracts.harness.fuzz.runner import FuzzSession, fuzz
from contracts.harness.fuzz.stateful import machine_for, run_stateful
from contracts.harness.fuzz.target import load_target


def test_a_relay_that_saves_the_token_first_loses_a_message_when_killed() -> None:
    target = load_target("tests.broken_relays:token_first")
    result = fuzz(target, examples=300, seed=1, sweep=False, progress=False)
    assert result.failure is not None
    assert any("is unanswered" in p for p in result.failure.problems["relay-answers-each-message-once"])
    plan = result.failure.plan
    # Shrunk: a person speaks, the relay is killed once; no fault is needed to lose the message.
    assert len(plan.kills) == 1
    assert [line.speaker for line in plan.said] == [PERSON]
    assert plan.faults == ()
    assert load_plan(result.failure.plan_file) == plan


def test_a_relay_that_answers_the_bot_is_caught() -> None:
    target = load_target("tests.broken_relays:answers_the_bot")
    result = fuzz(target, examples=300, seed=1, sweep=False, progress=False)
    assert result.failure is not None
    problems = result.failure.problems["relay-nothing-from-the-bridge-reaches-letta"]
    assert problems
    plan = result.failure.plan
    assert [line.speaker for line in plan.said] == ["bot"]
    assert plan.faults == ()
    assert plan.kills == ()


def test_the_relay_keeps_its_invariants_in_the_state_machine() -> None:
    # Agents come and go, people and the bridge's users talk, faults come and go, the relay runs: every
    # invariant (the relay's among them) after every run.
    with FuzzSession(load_target("letta_matrix_reference.bridge.target:fuzz_relay")) as session:
        run_stateful(session, settings(settings.default, stateful_step_count=12, max_examples=30))


def test_a_message_a_faulted_sync_could_not_relay_is_asked_for_after_the_next_clean_one() -> None:
    """Found by the state machine: a 400 on the space check stops the faulted sync before the relay runs
    (an expected error). The message is then owed by the next sync without faults, not by the faulted one;
    that sync answers it, and would fail the machine if it did not."""
    with FuzzSession(load_target("letta_matrix_reference.bridge.target:fuzz_relay")) as session:
        machine: Any = machine_for(session)()  # its rules are made by machine_for: unknown to mypy
        machine.start_formats(agents_format="array", messages_format="array")
        machine.add_agent(name="Ünïcödé ✓")
        machine.sync()
        space_check = FaultSpec("getRoomStateWithKey", 400, None, {"errcode": "M_INVALID_PARAM"}, True)
        machine.add_fault(fault=space_check)
        machine.talk(line=Said(0, PERSON, "Ünïcödé ✓"))
        machine.sync()
        machine.clear_faults()
        machine.sync()
        machine.teardown()
