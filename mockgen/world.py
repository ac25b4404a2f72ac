"""Everything both mock services share: the two stores, the faults, the journal and the start-up seed.

Still pure: no HTTP, no Connexion. The control API and the pytest plugin act on a `World`."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from contracts.validation import validator_for
from mockgen.faults import FaultTable
from mockgen.journal import Journal
from mockgen.store.errors import ControlError, LettaError, MatrixError
from mockgen.store.letta import LettaStore
from mockgen.store.letta_turns import VERSIONS, Version
from mockgen.store.matrix import PRESETS, MatrixStore
from mockgen.wakeups import Wakeups

DEFAULT_USERS: list[dict[str, Any]] = [
    {"username": "admin", "password": "admin_password", "admin": True},
    {"username": "letta", "password": "letta"},
]
DEFAULT_LETTA_TOKEN = "mock-letta-token"
# Synapse's listener limit (max(12.5 MiB, max_upload_size = 50 MiB)); a bigger body gets the connection
# dropped, no answer at all.
DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
# Twisted's (so Synapse's) and h11's (so Letta's under uvicorn) limit on a request line and headers.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024


@dataclass
class MockConfig:
    server_name: str = "matrix.test"
    # None: an open Letta, as a real one without LETTA_SERVER_SECURE, that takes any token or none.
    letta_token: str | None = DEFAULT_LETTA_TOKEN
    seed: dict[str, Any] = field(default_factory=dict)
    agents: int = 0
    letta_format: str = "array"
    messages_format: str = "array"
    random_seed: int | None = None
    journal_capacity: int = 10_000
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    validate: bool = True
    registration_enabled: bool = True
    matrix_public_url: str | None = None
    # The listeners' limits (mockgen/http/wire.py; the README says why these values). Seconds.
    header_timeout: float = 10.0  # a request line and headers, from their first byte
    body_timeout: float = 30.0  # between two reads of a request body
    keep_alive_timeout: float = 30.0  # an idle connection between requests
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_connections: int | None = None  # both listeners together; None: half the open-file limit, <= 1024
    shutdown_grace: float = 0.5  # what a request still running at shutdown gets before its 503
    # When set, every control API call must carry it (see mockgen.http.dialects.CONTROL_TOKEN_HEADER).
    control_token: str | None = None
    # Which Letta the mock answers as (mockgen.store.letta_turns.VERSIONS): its message path differs.
    letta_version: str = "0.11.7"


def load_seed_file(path: str | Path) -> dict[str, Any]:
    """A seed document (JSON or YAML) as used by `mockgen serve --seed`."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a seed file holds a mapping with users, agents and rooms")
    return data


class World:
    """The mock's whole state. `reset()` returns to the start-up seed without restarting anything."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        # Counts resets: a request that began before one belongs to a world that is gone (see Exchange).
        self.generation = 0
        self.faults = FaultTable()
        self.journal = Journal(self.config.journal_capacity)
        self.wakeups = Wakeups()
        self.matrix = self._new_matrix()
        self.letta = LettaStore(seed=self.config.random_seed, version=self._letta_version())
        self._apply_start_seed(check_messages=True)

    def _letta_version(self) -> Version:
        version = self.config.letta_version
        if version not in VERSIONS:
            raise ValueError(f"Letta version {version!r} is not one of {', '.join(VERSIONS)}")
        return version

    def _new_matrix(self) -> MatrixStore:
        matrix = MatrixStore(
            self.config.server_name,
            seed=self.config.random_seed,
            registration_enabled=self.config.registration_enabled,
            public_base_url=self.config.matrix_public_url,
        )
        # Every step of its stream wakes the waiting /syncs, which look again.
        matrix.on_change(self.wakeups.wake)
        return matrix

    def _apply_start_seed(self, *, check_messages: bool) -> None:
        """The configured seed, on the empty stores of a start or a reset: no rehearsal, since a seed that
        fails at start-up fails the start and leaves no world behind. A reset applies the seed that passed
        then, so only the start checks the seeded messages."""
        seed = copy.deepcopy(self.config.seed)
        seed.setdefault("users", DEFAULT_USERS)
        seed.setdefault(
            "letta_format", {"agents": self.config.letta_format, "messages": self.config.messages_format}
        )
        agents = list(seed.get("agents", []))
        agents.extend({"name": f"demo-agent-{n:03d}"} for n in range(1, self.config.agents + 1))
        seed["agents"] = agents
        added = self._apply(seed)
        if check_messages:
            _check_messages(self.letta, [agent["id"] for agent in added["agents"]], seed)

    def reset(self, seed: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back to the start-up seed; with `seed`, that seed added too (what `apply_seed` adds, returned),
        all or nothing: a seed that fails leaves the world as a plain reset does. On the fresh stores a
        failed seed is undone by resetting again, so no rehearsal is needed (the fuzzer resets with a seed
        before every example)."""
        self._fresh_stores()
        if seed is None:
            return {"users": [], "agents": [], "rooms": []}
        try:
            added = self._apply(seed)
            _check_messages(self.letta, [agent["id"] for agent in added["agents"]], seed)
        except BaseException:
            self._fresh_stores()
            raise
        return added

    def _fresh_stores(self) -> None:
        self.generation += 1
        self.faults.clear()
        self.journal.clear()
        self.matrix = self._new_matrix()
        self.letta = LettaStore(seed=self.config.random_seed, version=self._letta_version())
        self._apply_start_seed(check_messages=False)
        self.wakeups.wake()

    def set_public_url(self, matrix_url: str) -> None:
        """Where the Matrix mock is reachable (login answers carry it as `well_known`)."""
        self.config.matrix_public_url = matrix_url.rstrip("/") + "/"
        self.matrix.public_base_url = self.config.matrix_public_url

    def set_letta_format(self, agents: str | None = None, messages: str | None = None) -> dict[str, str]:
        _check_formats(agents, messages)
        if agents is not None:
            self.letta.agents_format = agents  # type: ignore[assignment]
        if messages is not None:
            self.letta.messages_format = messages  # type: ignore[assignment]
        return self.letta_format()

    def letta_format(self) -> dict[str, str]:
        return {"agents": self.letta.agents_format, "messages": self.letta.messages_format}

    def apply_seed(self, seed: dict[str, Any]) -> dict[str, Any]:
        """Add the users, agents and rooms a seed document describes; returns what was added. All or
        nothing: a seed that fails anywhere fails before it changes anything."""
        self._rehearse(seed)
        return self._apply(seed)

    def _rehearse(self, seed: dict[str, Any]) -> None:
        """Apply the seed to fresh stores holding this world's users and aliases, and check what Letta would
        serve: every way the seed can fail, without changing the world."""
        for n, agent in enumerate(seed.get("agents", [])):
            if agent.get("id") in self.letta.agents:
                raise ControlError(400, f"seed agents[{n}].id: agent {agent['id']} already exists")
        formats = seed.get("letta_format") or {}
        _check_formats(formats.get("agents"), formats.get("messages"))
        matrix = self._new_matrix()
        for user in list(self.matrix.users.values()):
            matrix.add_user(user.localpart, "")
        matrix.aliases.update(self.matrix.aliases)
        letta = LettaStore(seed=self.config.random_seed, version=self._letta_version())
        rehearsed = _seed_into(matrix, letta, seed)
        _check_messages(letta, [agent["id"] for agent in rehearsed["agents"]], seed)

    def _apply(self, seed: dict[str, Any]) -> dict[str, Any]:
        added = _seed_into(self.matrix, self.letta, seed)
        formats = seed.get("letta_format")
        if formats:
            self.set_letta_format(formats.get("agents"), formats.get("messages"))
        return added

    def snapshot(self) -> dict[str, Any]:
        matrix = self.matrix.snapshot()
        return {
            "server_name": matrix["server_name"],
            "letta_format": self.letta_format(),
            "users": matrix["users"],
            "rooms": matrix["rooms"],
            "agents": self.letta.snapshot(),
        }


def _seed_into(matrix: MatrixStore, letta: LettaStore, seed: dict[str, Any]) -> dict[str, Any]:
    added: dict[str, Any] = {"users": [], "agents": [], "rooms": []}
    for n, user in enumerate(seed.get("users", [])):
        try:
            added["users"].append(
                matrix.add_user(
                    str(user["username"]),
                    str(user["password"]),
                    admin=bool(user.get("admin", False)),
                    displayname=user.get("displayname"),
                    check_name=True,
                )
            )
        except MatrixError as exc:
            raise ControlError(400, f"seed users[{n}].username: {exc.error}") from None
    for n, agent in enumerate(seed.get("agents", [])):
        created_at = agent.get("created_at")
        if created_at is not None and not _is_second_stamp(created_at):
            raise ControlError(
                400, f"seed agents[{n}].created_at: {created_at!r} is not like 2026-11-22T07:15:10"
            )
        try:
            created = letta.create(
                agent.get("name"),
                agent_id=agent.get("id"),
                created_at=created_at,
                tags=agent.get("tags"),
                messages=agent.get("messages"),
            )
        except LettaError as exc:
            raise ControlError(400, f"seed agents[{n}]: {exc.detail}") from None
        added["agents"].append({"id": created.id, "name": created.name})
    for n, room in enumerate(seed.get("rooms", [])):
        added["rooms"].append(_seed_room(matrix, room, f"seed rooms[{n}]"))
    return added


def _seed_room(matrix: MatrixStore, room: dict[str, Any], where: str) -> str:
    try:
        creator = matrix.user_by_name(str(room["creator"]))
    except KeyError as exc:
        raise ControlError(400, f"{where}.creator: {exc.args[0]}") from None
    preset = room.get("preset", "private_chat")
    if preset not in PRESETS:
        raise ControlError(400, f"{where}.preset: {preset!r} is not one of {', '.join(PRESETS)}")
    body: dict[str, Any] = {"preset": preset}
    for key in ("name", "topic"):
        if key in room:
            body[key] = room[key]
    if room.get("space"):
        body["creation_content"] = {"type": "m.space"}
    if room.get("alias"):
        body["room_alias_name"] = room["alias"]
    try:
        body["invite"] = [matrix.user_by_name(str(name)).user_id for name in room.get("invite", [])]
        room_id = matrix.create_room(creator, body)
        for name in room.get("join", []):
            matrix.join(matrix.user_by_name(str(name)), room_id)
    except MatrixError as exc:
        raise ControlError(400, f"{where}: {exc.error}") from None
    except KeyError as exc:
        raise ControlError(400, f"{where}: {exc.args[0]}") from None
    return room_id


def _check_formats(agents: str | None, messages: str | None) -> None:
    if agents is not None and agents not in ("array", "envelope"):
        raise ControlError(400, f"agents format {agents!r} is not one of array, envelope")
    if messages is not None and messages not in ("array", "items"):
        raise ControlError(400, f"messages format {messages!r} is not one of array, items")


def _is_second_stamp(value: Any) -> bool:
    """Letta 0.11.7's `created_at`: second precision, no zone (and a real date)."""
    if not isinstance(value, str):
        return False
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").isoformat() == value
    except ValueError:
        return False


def _check_messages(letta: LettaStore, agent_ids: list[str], seed: dict[str, Any]) -> None:
    """Seeded messages, ids and dates filled in, must be what Letta could serve."""
    validator = validator_for("letta")
    operation = validator.operations["listMessages"]
    for n, (agent_id, agent) in enumerate(zip(agent_ids, seed.get("agents", []), strict=True)):
        if agent.get("messages") is None:
            continue
        problems = validator.check_body(operation, 200, letta.list_messages(agent_id, limit=0))
        if problems:
            first = problems[0]
            raise ControlError(
                400,
                f"seed agents[{n}].messages{first.pointer.replace('/', '.')}: "
                f"expected {first.expected}, got {first.actual}",
            )
