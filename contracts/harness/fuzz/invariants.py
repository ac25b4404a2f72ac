"""What must hold after every fuzz example: small named checks in a registry (add your own with
`@invariant("name")`). Each gets the whole observation and returns what it found wrong. The journal comes
as the mock's typed entries (`mockgen.journal.Entry`): read their fields (`entry.status`,
`entry.violations`, each a `Violation`); their bodies are parsed only when read."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.harness.fuzz.plan import Plan
from contracts.harness.fuzz.target import FuzzContext, Target
from contracts.validation import Side, Violation
from mockgen.journal import Entry


@dataclass
class Run:
    """One call of the target: `seconds` of wall time, `loop_seconds` on its loop's clock (virtual time
    counts the waits the clock skipped)."""

    seconds: float
    error: BaseException | None = None
    loop_seconds: float = 0.0
    state: Mapping[str, Any] | None = None
    state_error: str | None = None


@dataclass
class Observation:
    target: Target
    plan: Plan
    context: FuzzContext  # what the target's runs were handed
    faulted: Run | None  # None: no run met faults (a sync of the state machine without any)
    clean: Run | None  # None: no run without faults followed (one of the state machine's faulted syncs)
    journal: list[Entry]
    snapshot: dict[str, Any]
    time_bound: float
    core_users: frozenset[str] = field(default_factory=frozenset)
    warm: Run | None = None  # the run before the faults, when the plan asked for one

    @property
    def workdir(self) -> Path:
        return self.context.workdir

    @property
    def ended_clean(self) -> bool:
        """A run without faults came last and ended without an error: what promises are judged after."""
        return self.clean is not None and self.clean.error is None

    def runs(self) -> list[tuple[str, Run]]:
        """The target's runs in order, labelled. Without faults in the plan (calibration, a plan that drew
        none) no run was faulted: the runs are named by their order."""
        slots = (("warm-up", self.warm), ("faulted", self.faulted), ("clean", self.clean))
        runs = [(label, run) for label, run in slots if run is not None]
        if self.plan.faults:
            return runs
        return list(zip(("first", "second", "third"), (run for _, run in runs), strict=False))


Invariant = Callable[[Observation], list[str]]
INVARIANTS: dict[str, Invariant] = {}


def invariant(name: str) -> Callable[[Invariant], Invariant]:
    def register(check: Invariant) -> Invariant:
        INVARIANTS[name] = check
        return check

    return register


def check_all(observation: Observation, skip: Collection[str] = ()) -> dict[str, list[str]]:
    """{invariant name: problems} for every invariant not in `skip` that found any."""
    found: dict[str, list[str]] = {}
    for name, check in INVARIANTS.items():
        if name in skip:
            continue
        problems = check(observation)
        if problems:
            found[name] = problems
    return found


def _describe(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}: {error}"


WHEN = {"warm-up": "before the faults", "faulted": "with faults", "clean": "without faults"}


@invariant("no-unhandled-exception")
def no_unhandled_exception(obs: Observation) -> list[str]:
    """Nothing escapes the target but its expected exceptions, and those only while faults are installed."""
    return [
        f"{WHEN.get(label, f'on its {label} run (no faults)')}, the target raised {_describe(run.error)}"
        for label, run in obs.runs()
        if run.error is not None
        and not (label == "faulted" and isinstance(run.error, obs.target.expected_exceptions))
    ]


def _violations(obs: Observation, side: Side) -> list[tuple[Entry, Violation]]:
    """(journal entry, violation) for every violation on `side` (request or response)."""
    return [(entry, v) for entry in obs.journal for v in entry.violations if v.side == side]


@invariant("requests-follow-contract")
def requests_follow_contract(obs: Observation) -> list[str]:
    return [f"{e.method} {e.path}: {v.message}" for e, v in _violations(obs, "request")]


@invariant("mock-answers-follow-contract")
def mock_answers_follow_contract(obs: Observation) -> list[str]:
    return [
        f"mock bug: {e.method} {e.path} -> {e.status}: {v.message}" for e, v in _violations(obs, "response")
    ]


@invariant("state-loadable")
def state_loadable(obs: Observation) -> list[str]:
    return [
        f"after the {label} run the persisted state did not load: {run.state_error}"
        for label, run in obs.runs()
        if run.state_error
    ]


@invariant("state-keeps-entries")
def state_keeps_entries(obs: Observation) -> list[str]:
    problems = []
    runs = obs.runs()
    for (_, before), (label, after) in itertools.pairwise(runs):
        if before.state is None or after.state is None:
            continue
        lost = sorted(set(before.state) - set(after.state))
        if lost:
            problems.append(f"the {label} run lost persisted entries: {', '.join(map(str, lost))}")
    return problems


@invariant("converged-after-clean-run")
def converged(obs: Observation) -> list[str]:
    if not obs.ended_clean:
        return []
    return obs.target.converged(obs.snapshot, obs.context)


@invariant("no-duplicate-rooms")
def no_duplicate_rooms(obs: Observation) -> list[str]:
    """Outside the pre-seeded accounts, nobody creates more than one room (one per agent user)."""
    created = Counter(
        room["creator"] for room in obs.snapshot["rooms"] if room["creator"] not in obs.core_users
    )
    return [f"{user} created {count} rooms" for user, count in sorted(created.items()) if count > 1]


@invariant("within-time-bound")
def within_time_bound(obs: Observation) -> list[str]:
    return [
        f"the {label} run took {run.seconds:.1f} s (bound {obs.time_bound:.0f} s)"
        for label, run in obs.runs()
        if run.seconds > obs.time_bound
    ]


# -- a relay (a target declared with `relays=True`): people's messages in agent rooms, answered by the agent.
# The bridge's users are the world's starting accounts (its admin and bot) and each agent room's creator (the
# agent's user); everyone else in a room is a person. An answer is a rich reply (`m.in_reply_to`).


def _agent_rooms(obs: Observation) -> list[dict[str, Any]]:
    return [
        room
        for room in obs.snapshot["rooms"]
        if not room["is_space"] and room["creator"] not in obs.core_users
    ]


def _bridge_users(obs: Observation) -> set[str]:
    return set(obs.core_users) | {room["creator"] for room in _agent_rooms(obs)}


def _answered(event: Mapping[str, Any]) -> str | None:
    relates = event["content"].get("m.relates_to")
    reply = relates.get("m.in_reply_to") if isinstance(relates, dict) else None
    answered = reply.get("event_id") if isinstance(reply, dict) else None
    return answered if isinstance(answered, str) else None


def _asked(obs: Observation, room: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The people's messages a relay owes an answer: after the bot (the world's first ordinary account,
    which syncs) last joined, not notices, not blank."""
    bot = obs.context.user_id(obs.context.bot)
    talk = room["talk"]
    start = 0
    for n, event in enumerate(talk):
        if event["type"] == "m.room.member" and event["state_key"] == bot:
            start = n + 1 if event["content"].get("membership") == "join" else len(talk)
    bridge = _bridge_users(obs)
    return [
        event
        for event in talk[start:]
        if event["type"] == "m.room.message"
        and event["sender"] not in bridge
        and event["content"].get("msgtype") != "m.notice"
        and isinstance(event["content"].get("body"), str)
        and event["content"]["body"].strip()
    ]


def _replies(room: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [e for e in room["talk"] if e["type"] == "m.room.message" and _answered(e) is not None]


@invariant("relay-answers-each-message-once")
def relay_answers_once(obs: Observation) -> list[str]:
    """Every person's message is answered (after a clean run), and no answer is posted twice."""
    if not obs.target.relays:
        return []
    problems = []
    for room in _agent_rooms(obs):
        replies = _replies(room)
        if obs.ended_clean:
            answered = {_answered(reply) for reply in replies}
            problems += [
                f"{event['event_id']} ({event['content']['body'][:30]!r}) in {room['room_id']} is unanswered"
                for event in _asked(obs, room)
                if event["event_id"] not in answered
            ]
        seen: Counter[str] = Counter(
            json.dumps(reply["content"], sort_keys=True, ensure_ascii=False) for reply in replies
        )
        problems += [
            f"an answer was posted {count} times in {room['room_id']}: {content[:80]}"
            for content, count in seen.items()
            if count > 1
        ]
    return problems


@invariant("relay-answers-in-place-and-order")
def relay_answers_in_place(obs: Observation) -> list[str]:
    """Each answer is in the room of the message it answers, sent by that room's agent user, and answers
    come in the order of the messages they answer."""
    if not obs.target.relays:
        return []
    problems = []
    for room in _agent_rooms(obs):
        order = {event["event_id"]: n for n, event in enumerate(room["talk"])}
        asked = [order[_answered(reply) or ""] for reply in _replies(room) if _answered(reply) in order]
        for reply in _replies(room):
            if _answered(reply) not in order:
                problems.append(f"{reply['event_id']} in {room['room_id']} answers a message of another room")
            if reply["sender"] != room["creator"]:
                problems.append(f"{reply['event_id']} in {room['room_id']} was sent by {reply['sender']}")
        if asked != sorted(asked):
            problems.append(f"answers in {room['room_id']} are out of the order of the messages")
    return problems


@invariant("relay-nothing-from-the-bridge-reaches-letta")
def relay_nothing_from_the_bridge(obs: Observation) -> list[str]:
    """Letta is only sent what people said (never a bridge user's message: that way lie echo loops)."""
    if not obs.target.relays:
        return []
    said = {event["content"].get("body") for room in _agent_rooms(obs) for event in _asked(obs, room)}
    problems = []
    for entry in obs.journal:
        if entry.operation not in ("sendAgentMessage", "streamAgentMessage") or not isinstance(
            entry.request_body, dict
        ):
            continue
        for message in entry.request_body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if content not in said:
                problems.append(f"Letta was sent {str(content)[:60]!r}, which no person said")
    return problems


@invariant("relay-typing-off-after-the-turn")
def relay_typing_off(obs: Observation) -> list[str]:
    """After a clean run no agent is left typing."""
    if not obs.target.relays or not obs.ended_clean:
        return []
    return [
        f"{user} is still typing in {room['room_id']}"
        for room in _agent_rooms(obs)
        for user in room["typing"]
        if user in _bridge_users(obs)
    ]
