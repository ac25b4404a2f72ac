"""A fuzz plan: the world a target meets (agents, list formats) and the faults it runs into, all drawn from
the contract. Faults pick a documented (operation, status, variant) cell and answer with a generated body
for it; success statuses are only faked on read operations (a write that "succeeded" without happening is
not something a real server does).

A plan is saved as JSON (`save_plan`, `load_plan`): a failure's shrunk plan is what `contracts fuzz
--replay FILE` runs again. The file is the plan's fields by name, each fault's too:

    {"fuzz_plan": 1, "agents": ["Ada"], "agents_format": "envelope", "messages_format": "array",
     "warm": false, "faults": [{"operation": "listAgents", "status": 500, "variant": null,
     "body": {"detail": "boom"}, "has_body": true, "times": 1, "after": 0, "latency_ms": 0,
     "drop_connection": false, "retry_after_ms": null}]}

A field left out takes its default; a field the plan does not have is an error.

For a target that relays chat, a plan also says who talks in the agent rooms once the target has made them
(`said`: people, and the bridge's own users, whose messages must never be relayed) and where the target
is killed and started again (`kills`: at that request of its faulted run, counted as the mock receives
them; see `kills.py`)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from contracts.coverage import Cell
from contracts.harness.fuzz.people import agent_rooms, let_in, say
from contracts.strategies import EDGE_STRINGS, response_bodies
from contracts.validation import validator_for
from mockgen.control import install_fault
from mockgen.world import DEFAULT_USERS, World

# Short waits keep a fuzz example fast; the target's own retry bounds decide how long it waits in total.
LATENCIES_MS = (0, 0, 0, 0, 5, 20)
RETRY_AFTER_MS = (0, 1, 10, 50)
# Most faults hit the first call they can: a target may call an operation only once per run.
AFTER = (0, 0, 0, 1, 2)
TIMES = (1, 1, 2, 3)

AGENT_NAMES = st.one_of(
    st.sampled_from([name for name in EDGE_STRINGS if name.strip()]),
    st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != ""),
)


@dataclass(frozen=True)
class FaultSpec:
    operation: str
    status: int | None = None
    variant: str | None = None
    body: Any = None
    has_body: bool = False
    times: int = 1
    after: int = 0
    latency_ms: int = 0
    drop_connection: bool = False
    retry_after_ms: int | None = None

    def to_control(self) -> dict[str, Any]:
        """The fault as the control API takes it."""
        spec: dict[str, Any] = {"operation": self.operation, "times": self.times, "after": self.after}
        if self.latency_ms:
            spec["latency_ms"] = self.latency_ms
        if self.drop_connection:
            spec["drop_connection"] = True
        elif self.retry_after_ms is not None:
            spec["rate_limit"] = {"retry_after_ms": self.retry_after_ms}
        elif self.status is not None:
            spec["status"] = self.status
            if self.has_body:
                spec["body"] = self.body
        return spec

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any) -> FaultSpec:
        read = _Reader(data, cls, "fault", frozenset())
        return cls(
            operation=read.value("operation", str, required=True),
            status=read.value("status", int, optional=True),
            variant=read.value("variant", str, optional=True),
            body=read.value("body", object, optional=True),
            has_body=read.value("has_body", bool),
            times=read.value("times", int),
            after=read.value("after", int),
            latency_ms=read.value("latency_ms", int),
            drop_connection=read.value("drop_connection", bool),
            retry_after_ms=read.value("retry_after_ms", int, optional=True),
        )

    def describe(self) -> str:
        if self.drop_connection:
            what = "drop the connection"
        elif self.retry_after_ms is not None:
            what = f"429 retry_after_ms={self.retry_after_ms}"
        elif self.status is not None:
            what = f"{self.status}{f' ({self.variant})' if self.variant else ''} {_short(self.body)}"
        else:
            what = "answer late"
        timing = f" after {self.after}" if self.after else ""
        late = f", +{self.latency_ms} ms" if self.latency_ms and self.status is not None else ""
        return f"{self.operation}: {what} x{self.times}{timing}{late}"


# Who may speak in an agent room: a person (relayed), or one of the bridge's own users (never relayed).
SPEAKERS = ("person", "person", "person", "admin", "bot", "agent")
PERSON = "person"
MESSAGE_TEXTS = st.one_of(
    st.sampled_from([text for text in EDGE_STRINGS if text.strip()]),
    st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != ""),
)


@dataclass(frozen=True)
class Said:
    """A message sent in the `room`-th agent room (modulo how many there are) by `speaker`."""

    room: int
    speaker: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"room": self.room, "speaker": self.speaker, "text": self.text}

    @classmethod
    def from_json(cls, data: Any) -> Said:
        if (
            not isinstance(data, Mapping)
            or set(data) != {"room", "speaker", "text"}
            or not isinstance(data["room"], int)
            or data["speaker"] not in SPEAKERS
            or not isinstance(data["text"], str)
        ):
            raise ValueError(f"a said entry is {{room, speaker ({', '.join(sorted(set(SPEAKERS)))}), text}}")
        return cls(data["room"], data["speaker"], data["text"])


def core_users(world: World) -> frozenset[str]:
    """The accounts the world starts with (the bridge's admin and bot among them)."""
    return frozenset(world.matrix.user_id_for(str(user["username"])) for user in _seeded(world))


def _seeded(world: World) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = world.config.seed.get("users", DEFAULT_USERS)
    return users


def speak(world: World, said: Sequence[Said]) -> None:
    """Send `said` in the world's agent rooms (nothing when there are none yet). The bridge's users are
    the world's first server admin and first other account (as a fuzz context names them) and each
    room's creator (its agent's user); one who is not in the room says nothing."""
    if not said:
        return  # a plan for a target that does not relay: no snapshot to take
    rooms = agent_rooms(world.snapshot(), core_users(world))
    if not rooms:
        return
    users = _seeded(world)
    admin = next((str(u["username"]) for u in users if u.get("admin")), None)
    bot = next((str(u["username"]) for u in users if not u.get("admin")), None)
    for line in said:
        room = rooms[line.room % len(rooms)]
        if line.speaker == PERSON:
            sender = let_in(world, room, "fuzz_person")
        else:
            name = {"admin": admin, "bot": bot, "agent": room["creator"]}[line.speaker]
            if name is None:
                continue
            sender = world.matrix.user_by_name(name).user_id
            if room["members"].get(sender) != "join":
                continue
        say(world, room["room_id"], sender, line.text)
        room["members"][sender] = "join"


@dataclass(frozen=True)
class Plan:
    agents: tuple[str, ...] = ()
    agents_format: str = "array"
    messages_format: str = "array"
    faults: tuple[FaultSpec, ...] = ()
    # The target first runs once without faults, so the faults meet a target that has state (what it calls
    # only on later runs, such as checking the space it made, is faulted too).
    warm: bool = False
    said: tuple[Said, ...] = ()  # sent in the agent rooms once the faults are installed
    kills: tuple[int, ...] = ()  # the faulted run is killed at its request number N, then restarted

    def prepare(self, world: World) -> None:
        """Reset the world to this plan's starting point (the faults are installed separately)."""
        world.reset({"agents": [{"name": name} for name in self.agents]})
        world.set_letta_format(self.agents_format, self.messages_format)

    def install_faults(self, world: World) -> None:
        for fault in self.faults:
            install_fault(world, fault.to_control())

    def begin(self, world: World) -> None:
        """What happens between the warm-up and the faulted run: the faults come, people talk."""
        self.install_faults(world)
        speak(world, self.said)

    def to_json(self) -> dict[str, Any]:
        return {
            "fuzz_plan": PLAN_FORMAT,
            "agents": list(self.agents),
            "agents_format": self.agents_format,
            "messages_format": self.messages_format,
            "warm": self.warm,
            "faults": [fault.to_json() for fault in self.faults],
            "said": [line.to_json() for line in self.said],
            "kills": list(self.kills),
        }

    @classmethod
    def from_json(cls, data: Any) -> Plan:
        read = _Reader(data, cls, "plan", frozenset({"fuzz_plan"}))
        version = read.value("fuzz_plan", int, required=True)
        if version != PLAN_FORMAT:
            raise ValueError(f"plan format {version} is not {PLAN_FORMAT}, the one this fuzzer reads")
        agents = read.value("agents", list)
        if not all(isinstance(name, str) for name in agents):
            raise ValueError("plan agents must be names (strings)")
        return cls(
            agents=tuple(agents),
            agents_format=read.value("agents_format", str),
            messages_format=read.value("messages_format", str),
            faults=tuple(FaultSpec.from_json(fault) for fault in read.value("faults", list)),
            warm=read.value("warm", bool),
            said=tuple(Said.from_json(line) for line in read.value("said", list)),
            kills=tuple(_count(kill) for kill in read.value("kills", list)),
        )

    def describe(self) -> str:
        agents = (
            ", ".join(repr(name if len(name) <= 24 else name[:21] + "...") for name in self.agents) or "none"
        )
        lines = [
            f"agents: {agents}",
            f"Letta lists: agents {self.agents_format}, messages {self.messages_format}",
        ]
        if self.warm:
            lines.append("the target ran once without faults first")
        lines += [f"fault: {fault.describe()}" for fault in self.faults] or ["faults: none"]
        lines += [f"{line.speaker} in agent room {line.room}: {line.text!r}" for line in self.said]
        lines += [f"killed at its request {kill}, then restarted" for kill in self.kills]
        return "\n".join(lines)


PLAN_FORMAT = 1


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"plan kills are request numbers, not {value!r}")
    return value


class _Reader:
    """The typed fields of one JSON object of a plan file; a field left out takes its default."""

    def __init__(self, data: Any, kind: type[FaultSpec | Plan], what: str, extra: frozenset[str]) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"a {what} is a JSON object, not {type(data).__name__}")
        self.defaults = {f.name: f.default for f in fields(kind)}
        unknown = set(data) - set(self.defaults) - extra
        if unknown:
            raise ValueError(f"a {what} has no field {', '.join(sorted(map(str, unknown)))}")
        self.data, self.what = data, what

    def value(self, name: str, kind: type, *, optional: bool = False, required: bool = False) -> Any:
        if name not in self.data:
            if required:
                raise ValueError(f"a {self.what} needs {name}")
            return self.defaults[name]
        value = self.data[name]
        if value is None and optional:
            return None
        # bool is an int to isinstance; a count given as true is a mistake, not 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{self.what} {name} must be {kind.__name__}, not {value!r}")
        return value


def save_plan(plan: Plan, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_plan(path: Path) -> Plan:
    """The plan saved in `path`; ValueError when the file holds no plan (OSError when it cannot be read)."""
    text = path.read_text(encoding="utf-8")
    try:
        return Plan.from_json(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise ValueError(f"{path} is not a fuzz plan: {exc}") from None


def _short(body: Any) -> str:
    text = repr(body)
    return text if len(text) <= 60 else text[:57] + "..."


KINDS = ("answer", "answer", "answer", "answer", "drop", "late")
# A fault's parts, built once: Hypothesis validates a strategy the first time it draws from it, so one
# built inside the draw is validated on every draw. Its count, start, latency and kind are one draw:
# Hypothesis's cost is per draw (tens of microseconds here), and a plan draws up to four faults. In the
# product's order a shrink still moves towards the first entry of each: once, at once, no latency, an answer.
_SHAPES = st.sampled_from(list(itertools.product(TIMES, AFTER, LATENCIES_MS, KINDS)))
_LATE_MS = st.sampled_from((5, 20, 50))
_RETRY_AFTER = st.sampled_from(RETRY_AFTER_MS)


def faults(cells: Sequence[Cell]) -> st.SearchStrategy[FaultSpec]:
    """A fault in one of `cells`: an answer with a generated body, a dropped connection or a late one."""
    return _faults(st.sampled_from(list(cells)))


@st.composite
def _faults(draw: st.DrawFn, cells: st.SearchStrategy[Cell]) -> FaultSpec:
    service, operation, status, variant = draw(cells)
    times, after, latency, kind = draw(_SHAPES)
    if kind == "drop":
        return FaultSpec(operation, times=times, after=after, drop_connection=True)
    if kind == "late":
        return FaultSpec(operation, times=times, after=after, latency_ms=draw(_LATE_MS))
    if status == 429 and draw(st.booleans()):
        return FaultSpec(operation, 429, times=times, after=after, retry_after_ms=draw(_RETRY_AFTER))
    body = draw(response_bodies(operation, status, service=service, variant=variant))
    if status == 429 and isinstance(body, dict) and "retry_after_ms" in body:
        body = {**body, "retry_after_ms": draw(_RETRY_AFTER)}
    return FaultSpec(operation, status, variant, body, body is not None, times, after, latency)


# Reads whose success is never faked: a /sync answer's `next_batch` is a position on the server's stream,
# and a generated one tells the client it was shown events it never saw (a real server does not skip
# events; no client can recover what it was never given). Found by the relay's fuzzing.
UNFAKEABLE = frozenset({"sync"})


def fault_cells(cells: Sequence[Cell], read_operations: frozenset[str]) -> list[Cell]:
    """The cells a fault may answer with: every error, and success only on read operations (but
    `UNFAKEABLE` ones)."""
    return [
        cell for cell in cells if cell[2] >= 300 or (cell[1] in read_operations and cell[1] not in UNFAKEABLE)
    ]


def plans(
    cells: Sequence[Cell],
    read_operations: frozenset[str],
    *,
    max_agents: int = 4,
    max_faults: int = 4,
    relays: bool = False,
) -> st.SearchStrategy[Plan]:
    """Plans over the given coverage cells (the operations a target calls). For a target that `relays`,
    people (and the bridge's users) talk in the agent rooms, and the target is killed and restarted."""
    usable = fault_cells(cells, read_operations)
    said: st.SearchStrategy[tuple[Said, ...]] = st.just(())
    kills: st.SearchStrategy[tuple[int, ...]] = st.just(())
    warm: st.SearchStrategy[bool] = st.booleans()
    if relays:
        lines = st.builds(Said, st.integers(0, max_agents), st.sampled_from(SPEAKERS), MESSAGE_TEXTS)
        said = st.lists(lines, min_size=1, max_size=6).map(tuple)
        # A bridge's run makes a dozen or two requests: kills land among them.
        kills = st.lists(st.integers(0, 24), max_size=2).map(tuple)
        # Mostly warm: people can only talk in rooms a run has made.
        warm = st.sampled_from((False, True, True))
    return st.builds(
        Plan,
        agents=st.lists(AGENT_NAMES, max_size=max_agents).map(tuple),
        agents_format=st.sampled_from(("array", "envelope")),
        messages_format=st.sampled_from(("array", "items")),
        faults=st.lists(faults(usable), max_size=max_faults).map(tuple) if usable else st.just(()),
        warm=warm,
        said=said,
        kills=kills,
    )


SWEEP_AGENTS = ("sweep one", "sweep two")
# What people say in the sweep's plans (and the calibration's) for a relaying target.
SWEEP_SAID = (Said(0, PERSON, "sweep hello"), Said(1, PERSON, "sweep hi"))


def sweep_plans(
    cells: Sequence[Cell],
    read_operations: frozenset[str],
    cold_operations: frozenset[str],
    *,
    relays: bool = False,
) -> list[Plan]:
    """The plans every fuzz run starts with, before any random one: each list format once, then each
    documented error of each operation the target calls, answered once with the spec's example (a target
    that has run before meets the errors of what it calls only on later runs, like checking its space).
    Random plans rarely reach an error that only one call per agent can meet; these make the coverage
    matrix a floor, not a lottery. For a target that `relays`, people talk in every sweep plan, so what the
    relay calls per message meets its errors too, and every other example the spec gives for an error is
    answered once as well (an error's variants, such as Letta's 422 shapes, are met only through what
    people say, which random plans reach too rarely to cover them all)."""
    said = SWEEP_SAID if relays else ()
    plans = [
        Plan(agents=SWEEP_AGENTS, agents_format="envelope", messages_format="items", said=said),
        Plan(agents=SWEEP_AGENTS, agents_format="array", messages_format="array", said=said),
    ]
    errors = sorted({(operation, status) for _, operation, status, _ in fault_cells(cells, read_operations)})
    plans += [
        Plan(
            agents=SWEEP_AGENTS,
            faults=(FaultSpec(operation, status),),
            warm=operation not in cold_operations,
            said=said,
        )
        for operation, status in errors
        if status >= 300
    ]
    if relays:
        services = {operation: service for service, operation, _, _ in cells}
        plans += [
            Plan(
                agents=SWEEP_AGENTS,
                faults=(FaultSpec(operation, status, None, body, True),),
                warm=operation not in cold_operations,
                said=said,
            )
            for operation, status in errors
            if status >= 300
            for body in _other_examples(services[operation], operation, status)
        ]
    return plans


def _other_examples(service: str, operation_id: str, status: int) -> list[Any]:
    """The spec's examples of an answer but the first (which a fault without a body answers with)."""
    for operation in validator_for(service).iter_operations():
        if operation.operation_id == operation_id:
            answer = operation.response(status)
            return [value for _, value in answer.examples[1:]] if answer is not None else []
    return []
