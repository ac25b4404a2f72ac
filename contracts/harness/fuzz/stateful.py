"""Stateful fuzzing: a Hypothesis rule-based state machine in which agents appear, are renamed and vanish,
list formats change, faults come and go, people talk in the agent rooms (for a target that relays), and the
target syncs — with every registered invariant checked after every sync (what is promised after a clean run
only after a sync that met no fault)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    rule,
    run_state_machine_as_test,
)

from contracts.harness.fuzz.invariants import Observation, check_all
from contracts.harness.fuzz.plan import (
    AGENT_NAMES,
    MESSAGE_TEXTS,
    SPEAKERS,
    FaultSpec,
    Plan,
    Said,
    fault_cells,
    faults,
    speak,
)
from contracts.harness.fuzz.runner import FuzzSession, InvariantBroken
from mockgen.control import install_fault, remove_agent, rename_agent

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
            self.context = session.new_context()
            self.faults: list[FaultSpec] = []
            self.state: Mapping[str, Any] | None = None
            self.checked = world.journal.last_seq  # exchanges up to here belong to earlier examples

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

        @rule(line=st.builds(Said, st.integers(0, 3), st.sampled_from(SPEAKERS), MESSAGE_TEXTS))
        def talk(self, line: Said) -> None:
            """Someone speaks in an agent room (for a target that relays; once a sync has made rooms)."""
            if session.target.relays:
                speak(world, (line,))

        @rule()
        def clear_faults(self) -> None:
            world.faults.clear()
            self.faults.clear()

        @rule()
        def sync(self) -> None:
            faulted = bool(self.faults)
            run = session._call(self.context)
            # Only syncs send requests (the other rules change the world directly), so each exchange is
            # judged once, by the sync that sent it.
            entries = world.journal.entries(since=self.checked)
            if entries:
                self.checked = entries[-1].seq
            observation = Observation(
                target=session.target,
                plan=Plan(faults=tuple(self.faults)),
                context=self.context,
                faulted=run if faulted else None,
                clean=None if faulted else run,
                journal=entries,
                snapshot=world.snapshot(),
                time_bound=session.time_bound,
                core_users=session.core_users,
            )
            # A faulted sync has no clean run: what is promised after one (convergence, every message
            # answered, typing off) waits for a sync without faults. Entries are kept across syncs, below.
            problems = check_all(observation, {"state-keeps-entries"})
            lost = set(self.state or {}) - set(run.state or {}) if run.state is not None else set()
            if lost:
                problems["state-keeps-entries"] = [
                    f"this sync lost persisted entries: {', '.join(map(str, sorted(lost)))}"
                ]
            if problems:
                raise InvariantBroken(problems)
            self.state = run.state if run.state is not None else self.state

    return TargetMachine


def run_stateful(session: FuzzSession, settings: Settings) -> None:
    """Drive `session.target` through the state machine; InvariantBroken names the first finding."""
    run_state_machine_as_test(machine_for(session), settings=settings)
