"""What the `letta_mock` and `matrix_mock` fixtures hand a test: one handle per service on the shared world.

No pytest in here: a harness or a script that runs `MockServers` itself can use the same handles."""

from __future__ import annotations

import asyncio
from typing import Any

from contracts.validation import Violation
from mockgen import control
from mockgen.faults import Fault
from mockgen.http.dialects import CONTROL_TOKEN_HEADER
from mockgen.journal import Entry
from mockgen.store.letta import Agent
from mockgen.world import DEFAULT_USERS, World


class MockHandle:
    """What both fixtures offer: the world, fault injection and this service's journal."""

    service: str = ""

    def __init__(self, world: World, url: str) -> None:
        self.world = world
        self.url = url

    @property
    def control_token(self) -> str | None:
        """The token the control API asks for (the session's mocks always have one)."""
        return self.world.config.control_token

    @property
    def control_headers(self) -> dict[str, str]:
        """What an HTTP call to `/_mock/...` needs: the control token and, for a write, the JSON content
        type (harmless on a read)."""
        token = {CONTROL_TOKEN_HEADER: self.control_token} if self.control_token is not None else {}
        return {**token, "Content-Type": "application/json"}

    def inject(self, operation: str | None = None, **fault: Any) -> Fault:
        """Install a fault (see specs/mock-control.yaml `Fault`), e.g. `inject("createRoom", status=500,
        times=2)` or `inject("register", rate_limit={"retry_after_ms": 10})`."""
        spec = dict(fault)
        if operation is not None:
            spec["operation"] = operation
        return control.install_fault(self.world, spec)

    def clear_faults(self) -> int:
        return self.world.faults.clear()

    def journal(self, operation: str | None = None) -> list[Entry]:
        """The exchanges this service answered (of `operation`), oldest first; both services' are in
        `world.journal`."""
        return self.world.journal.entries(operation=operation, service=self.service)

    def calls(self, operation: str) -> int:
        """How many requests this service answered for `operation`."""
        return len(self.journal(operation))

    def violations(self) -> list[Violation]:
        """The contract violations in this service's exchanges."""
        return [violation for entry in self.journal() for violation in entry.violations]


class LettaMock(MockHandle):
    """The `letta_mock` fixture: agents, list formats and the bearer token."""

    service = "letta"

    @property
    def token(self) -> str:
        """The password the mock asks for; "" for an open Letta, which takes any token or none."""
        return self.world.config.letta_token or ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def add_agent(self, name: str, **fields: Any) -> Agent:
        return self.world.letta.create(name, **fields)

    def add_agents(self, count: int, prefix: str = "agent") -> list[Agent]:
        return [self.world.letta.create(f"{prefix}-{n:04d}") for n in range(count)]

    def rename_agent(self, agent_id: str, name: str) -> None:
        control.rename_agent(self.world, agent_id, name)

    def remove_agent(self, agent_id: str) -> None:
        control.remove_agent(self.world, agent_id)

    @property
    def version(self) -> str:
        """The Letta release the mock answers as (ini option or `mock_config` key `letta_version`)."""
        return self.world.letta.version

    def script(self, agent_id: str, *turns: dict[str, Any]) -> int:
        """Script the agent's next turns, one dict a turn (specs/mock-control.yaml `TurnScript`), e.g.
        `script(aid, {"messages": [{"type": "tool_call", "name": "matrix_agent_message", ...}]})`
        or `script(aid, {"llm_error": "500"})`; how many turns are queued."""
        return control.script_turns(self.world, agent_id, list(turns))["queued"]

    def set_format(self, agents: str | None = None, messages: str | None = None) -> None:
        """How lists are answered: agents `array` or `envelope`, messages `array` or `items`."""
        self.world.set_letta_format(agents, messages)


class MatrixMock(MockHandle):
    """The `matrix_mock` fixture: accounts, the world's rooms, and a human acting in them."""

    service = "matrix"

    @property
    def server_name(self) -> str:
        return self.world.config.server_name

    @property
    def admin(self) -> tuple[str, str]:
        """(username, password) of the pre-seeded server admin."""
        first = DEFAULT_USERS[0]
        return str(first["username"]), str(first["password"])

    def add_user(self, username: str, password: str, *, admin: bool = False) -> str:
        """A new account (its user id), as if registered."""
        return self.world.matrix.add_user(username, password, admin=admin)

    def user_id(self, localpart: str) -> str:
        return self.world.matrix.user_id_for(localpart)

    def snapshot(self) -> dict[str, Any]:
        """The whole world as data: server name, Letta formats, users, rooms (with members and state),
        agents."""
        return self.world.snapshot()

    # -- a human in the test: act without a second client, and wait for the client under test

    def _user(self, user: str) -> str:
        return user if user.startswith("@") else self.user_id(user)

    def send_message(self, room_id: str, sender: str, body: str, *, msgtype: str = "m.text") -> str:
        """`sender` (a localpart or a user id, a member of the room) sends a message; its event id."""
        content = {"msgtype": msgtype, "body": body}
        return self.world.matrix.act_send(self._user(sender), room_id, content, "m.room.message")

    def set_typing(self, room_id: str, user: str, typing: bool = True, timeout_ms: int | None = None) -> None:
        self.world.matrix.act_typing(self._user(user), room_id, typing, timeout_ms)

    def timeline(self, room_id: str) -> list[dict[str, Any]]:
        """The room's events, oldest first."""
        return self.world.matrix.timeline(room_id)

    async def wait_synced(self, user: str, event_id: str, within: float = 5.0) -> None:
        """Until a /sync of `user` has answered past the event (TimeoutError after `within` seconds)."""
        matrix = self.world.matrix
        if not await asyncio.to_thread(matrix.wait_synced, self._user(user), event_id, within):
            raise TimeoutError(f"{user} did not sync past {event_id} within {within} s")
