"""Everything both mock services share: the two stores, the faults, the journal and the start-up seed.

Still pure: no HTTP, no Connexion. The control API and the pytest plugin act on a `World`."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mockgen.faults import FaultTable
from mockgen.journal import Journal
from mockgen.store.errors import ControlError, MatrixError
from mockgen.store.letta import LettaStore
from mockgen.store.matrix import PRESETS, MatrixStore

DEFAULT_USERS: list[dict[str, Any]] = [
    {"username": "admin", "password": "admin_password", "admin": True},
    {"username": "letta", "password": "letta"},
]
DEFAULT_LETTA_TOKEN = "mock-letta-token"
# Synapse's listener limit (max(12.5 MiB, max_upload_size = 50 MiB)); a bigger body gets the connection
# dropped, no answer at all.
DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024


@dataclass
class MockConfig:
    server_name: str = "matrix.test"
    letta_token: str = DEFAULT_LETTA_TOKEN
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
        self.faults = FaultTable()
        self.journal = Journal(self.config.journal_capacity)
        self.matrix = self._new_matrix()
        self.letta = LettaStore(seed=self.config.random_seed)
        self._apply_start_seed()

    def _new_matrix(self) -> MatrixStore:
        return MatrixStore(
            self.config.server_name,
            seed=self.config.random_seed,
            registration_enabled=self.config.registration_enabled,
            public_base_url=self.config.matrix_public_url,
        )

    def _apply_start_seed(self) -> None:
        seed = copy.deepcopy(self.config.seed)
        seed.setdefault("users", DEFAULT_USERS)
        seed.setdefault(
            "letta_format", {"agents": self.config.letta_format, "messages": self.config.messages_format}
        )
        agents = list(seed.get("agents", []))
        agents.extend({"name": f"demo-agent-{n:03d}"} for n in range(1, self.config.agents + 1))
        seed["agents"] = agents
        self.apply_seed(seed)

    def reset(self) -> None:
        self.faults.clear()
        self.journal.clear()
        self.matrix = self._new_matrix()
        self.letta = LettaStore(seed=self.config.random_seed)
        self._apply_start_seed()

    def set_public_url(self, matrix_url: str) -> None:
        """Where the Matrix mock is reachable (login answers carry it as `well_known`)."""
        self.config.matrix_public_url = matrix_url.rstrip("/") + "/"
        self.matrix.public_base_url = self.config.matrix_public_url

    def set_letta_format(self, agents: str | None = None, messages: str | None = None) -> dict[str, str]:
        if agents is not None:
            if agents not in ("array", "envelope"):
                raise ControlError(400, f"agents format {agents!r} is not one of array, envelope")
            self.letta.agents_format = agents  # type: ignore[assignment]
        if messages is not None:
            if messages not in ("array", "items"):
                raise ControlError(400, f"messages format {messages!r} is not one of array, items")
            self.letta.messages_format = messages  # type: ignore[assignment]
        return self.letta_format()

    def letta_format(self) -> dict[str, str]:
        return {"agents": self.letta.agents_format, "messages": self.letta.messages_format}

    def apply_seed(self, seed: dict[str, Any]) -> dict[str, Any]:
        """Add the users, agents and rooms a seed document describes; returns what was added."""
        added: dict[str, Any] = {"users": [], "agents": [], "rooms": []}
        for user in seed.get("users", []):
            added["users"].append(
                self.matrix.add_user(
                    str(user["username"]),
                    str(user["password"]),
                    admin=bool(user.get("admin", False)),
                    displayname=user.get("displayname"),
                )
            )
        for agent in seed.get("agents", []):
            created = self.letta.create(
                agent.get("name"),
                agent_id=agent.get("id"),
                created_at=agent.get("created_at"),
                tags=agent.get("tags"),
                messages=agent.get("messages"),
            )
            added["agents"].append({"id": created.id, "name": created.name})
        for room in seed.get("rooms", []):
            added["rooms"].append(self._seed_room(room))
        formats = seed.get("letta_format")
        if formats:
            self.set_letta_format(formats.get("agents"), formats.get("messages"))
        return added

    def _seed_room(self, room: dict[str, Any]) -> str:
        try:
            creator = self.matrix.user_by_name(str(room["creator"]))
        except KeyError as exc:
            raise ControlError(400, f"seed room: {exc.args[0]}") from None
        preset = room.get("preset", "private_chat")
        if preset not in PRESETS:
            raise ControlError(400, f"seed room: preset {preset!r} is not one of {', '.join(PRESETS)}")
        body: dict[str, Any] = {"preset": preset}
        for key in ("name", "topic"):
            if key in room:
                body[key] = room[key]
        if room.get("space"):
            body["creation_content"] = {"type": "m.space"}
        if room.get("alias"):
            body["room_alias_name"] = room["alias"]
        try:
            body["invite"] = [self.matrix.user_by_name(str(name)).user_id for name in room.get("invite", [])]
            room_id = self.matrix.create_room(creator, body)
            for name in room.get("join", []):
                self.matrix.join(self.matrix.user_by_name(str(name)), room_id)
        except (MatrixError, KeyError) as exc:
            raise ControlError(400, f"seed room: {exc}") from None
        return room_id

    def snapshot(self) -> dict[str, Any]:
        matrix = self.matrix.snapshot()
        return {
            "server_name": matrix["server_name"],
            "letta_format": self.letta_format(),
            "users": matrix["users"],
            "rooms": matrix["rooms"],
            "agents": self.letta.snapshot(),
        }
