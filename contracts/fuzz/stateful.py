"""Stateful fuzzing: a Hypothesis rule-based state machine in which agents appear, are renamed and vanish,
list formats change, faults come and go, and the target syncs — with the invariants checked after every
sync (convergence only after a sync that met no fault)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from contracts.fuzz.invariants import (
    Observation,
    Run,
    converged,
    mock_answers_follow_contract,
    no_duplicate_rooms,
    no_unhandled_exception,
    requests_follow_contract,
    state_loadable,
)
from contracts.fuzz.plan import AGENT_NAMES, FaultSpec, Plan, fault_cells, faults
from contracts.fuzz.runner import FuzzSession, InvariantBroken
from mockgen.control import install_fault, remove_agent, rename_agent

_IDLE = Run(seconds=0.0)
AGENTS_FORMATS = st.sampled_from(("array", "envelope"))
MESSAGES_FORMATS = st.sampled_from(("array", "items"))


def machine_for(session: FuzzSession) -> type[RuleBasedStateMachine]:
    """A state machine class driving `session.target` through `session`'s mock servers."""
    cells = fault_cells(list(session.coverage.cells), session.read_operations)
    world = session.world

    class TargetMachine(RuleBasedStateMachine):
        agents = Bundle("agents")

        def __init__(self) -> None:
            super().__init__()
            world.reset()
            self.workdir = Path(tempfile.mkdtemp(dir=session.root))
            self.faults: list[FaultSpec] = []
            self.state: Mapping[str, Any] | None = None
            self.checked = world.journal.last_seq  # exchanges before it were judged already

        @rule(target=agents, name=AGENT_NAMES)
        def add_agent(self, name: str) -> str:
            return world.letta.create(name).id

        @rule(agent=agents, name=AGENT_NAMES)
        def rename_agent(self, agent: str, name: str) -> None:
            if agent in world.letta.agents:
                rename_agent(world, agent, name)

        @rule(agent=consumes(agents))
        def remove_agent(self, agent: str) -> None:
            if agent in world.letta.agents:
                remove_agent(world, agent)

        # Every example starts in a drawn format, so each format is met from the first sync on and not only
        # when `change_formats` happens to be drawn before a sync.
        @initialize(agents_format=AGENTS_FORMATS, messages_format=MESSAGES_FORMATS)
        def start_formats(self, agents_format: str, messages_format: str) -> None:
            world.set_letta_format(agents_format, messages_format)

        @rule(agents_format=AGENTS_FORMATS, messages_format=MESSAGES_FORMATS)
        def change_formats(self, agents_format: str, messages_format: str) -> None:
            world.set_letta_format(agents_format, messages_format)

        @rule(fault=faults(cells))
        def add_fault(self, fault: FaultSpec) -> None:
            install_fault(world, fault.to_control())
            self.faults.append(fault)

        @rule()
        def clear_faults(self) -> None:
            world.faults.clear()
            self.faults.clear()

        @rule()
        def sync(self) -> None:
            faulted = bool(self.faults)
            run = session._call(self.workdir)
            observation = Observation(
                target=session.target,
                plan=Plan(faults=tuple(self.faults)),
                workdir=self.workdir,
                faulted=run if faulted else _IDLE,
                clean=_IDLE if faulted else run,
                journal=[],  # the exchanges are judged after every step, by exchanges_follow_contract
                snapshot=world.snapshot(),
                time_bound=session.time_bound,
                core_users=session.core_users,
            )
            problems: dict[str, list[str]] = {}
            checks = [no_unhandled_exception, state_loadable, no_duplicate_rooms] + (
                [] if faulted else [converged]
            )
            for check in checks:
                found = check(observation)
                if found:
                    problems[check.__name__.replace("_", "-")] = found
            lost = set(self.state or {}) - set(run.state or {}) if run.state is not None else set()
            if lost:
                problems["state-keeps-entries"] = [
                    f"this sync lost persisted entries: {', '.join(map(str, sorted(lost)))}"
                ]
            if problems:
                raise InvariantBroken(problems)
            self.state = run.state if run.state is not None else self.state

        @invariant()
        def exchanges_follow_contract(self) -> None:
            entries = world.journal.entries(since=self.checked)
            if entries:
                self.checked = entries[-1].seq
            journal = [entry.to_json() for entry in entries]
            observation = Observation(session.target, Plan(), self.workdir, _IDLE, _IDLE, journal, {}, 0.0)
            found = requests_follow_contract(observation) + mock_answers_follow_contract(observation)
            if found:
                raise InvariantBroken({"exchanges-follow-contract": found})

    return TargetMachine


def run_stateful(session: FuzzSession, settings: Settings) -> None:
    """Drive `session.target` through the state machine; InvariantBroken names the first finding."""
    # Hypothesis leaves this function unannotated.
    run_state_machine_as_test(machine_for(session), settings=settings)  # type: ignore[no-untyped-call]
