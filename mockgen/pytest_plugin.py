"""pytest plugin (entry point `pytest11`): `letta_mock` and `matrix_mock` fixtures.

Both mocks start once per test session on free loopback ports and share one `World`, which is reset before
every test. Strict by default: a test fails if the client under test broke the contract in any exchange (or
if the mock's own answer did, which is a mock bug). Mark a test `@pytest.mark.mock_lenient` to only record.

The session's mocks guard their control API with a random token: the fixtures act on the world directly, and
a test that calls `/_mock/...` over HTTP sends `control_headers`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from contracts.validation import Violation
from mockgen import control
from mockgen.faults import Fault
from mockgen.http.dialects import CONTROL_TOKEN_HEADER
from mockgen.journal import Entry
from mockgen.server import MockServers
from mockgen.store.letta import Agent
from mockgen.store.letta_turns import DEFAULT_VERSION, VERSIONS
from mockgen.world import DEFAULT_USERS, MockConfig, World

LENIENT_MARK = "mock_lenient"
VERSION_INI = "mockgen_letta_version"
# Bytes of randomness in the session's control token.
CONTROL_TOKEN_BYTES = 32


class MockHandle:
    """What both fixtures offer: the world, fault injection and the journal."""

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

    def journal(self, operation: str | None = None, *, service: str | None = None) -> list[Entry]:
        return self.world.journal.entries(operation=operation, service=service)

    def calls(self, operation: str) -> int:
        """How many requests the mocks answered for `operation`."""
        return len(self.world.journal.entries(operation=operation))

    def violations(self) -> list[Violation]:
        return [violation for entry in self.world.journal for violation in entry.violations]


class LettaMock(MockHandle):
    @property
    def token(self) -> str:
        return self.world.config.letta_token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def add_agent(self, name: str, **fields: Any) -> Agent:
        return self.world.letta.create(name, **fields)

    def add_agents(self, count: int, prefix: str = "agent") -> list[Agent]:
        return [self.world.letta.create(f"{prefix}-{n:04d}") for n in range(count)]

    def rename_agent(self, agent_id: str, name: str) -> None:
        control.rename_agent(self.world, agent_id, name)

    def remove_agent(self, agent_id: str) -> None:
        control.remove_agent(self.world, agent_id)

    def set_format(self, agents: str | None = None, messages: str | None = None) -> None:
        self.world.set_letta_format(agents, messages)

    @property
    def version(self) -> str:
        """The Letta release the mock answers as (ini option `mockgen_letta_version`)."""
        return self.world.letta.version

    def script(self, agent_id: str, *turns: dict[str, Any]) -> int:
        """Script the agent's next turns, one dict a turn (specs/mock-control.yaml `TurnScript`), e.g.
        `script(aid, {"messages": [{"type": "tool_call", "name": "matrix_agent_message", ...}]})`
        or `script(aid, {"llm_error": "500"})`; how many turns are queued."""
        return control.script_turns(self.world, agent_id, list(turns))["queued"]


class MatrixMock(MockHandle):
    @property
    def server_name(self) -> str:
        return self.world.config.server_name

    @property
    def admin(self) -> tuple[str, str]:
        """(username, password) of the pre-seeded server admin."""
        first = DEFAULT_USERS[0]
        return str(first["username"]), str(first["password"])

    def add_user(self, username: str, password: str, *, admin: bool = False) -> str:
        return self.world.matrix.add_user(username, password, admin=admin)

    def user_id(self, localpart: str) -> str:
        return self.world.matrix.user_id_for(localpart)

    def snapshot(self) -> dict[str, Any]:
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        VERSION_INI, f"the Letta release the mock answers as ({', '.join(VERSIONS)})", default=DEFAULT_VERSION
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{LENIENT_MARK}: record contract violations without failing the test")


@pytest.fixture(scope="session")
def mockgen_servers(pytestconfig: pytest.Config) -> Iterator[MockServers]:
    """Both mock services for the whole session (free loopback ports)."""
    config = MockConfig(
        control_token=secrets.token_urlsafe(CONTROL_TOKEN_BYTES),
        letta_version=str(pytestconfig.getini(VERSION_INI)),
    )
    servers = MockServers(World(config))
    servers.start()
    yield servers
    servers.stop()


@pytest.fixture
def mock_world(mockgen_servers: MockServers, request: pytest.FixtureRequest) -> Iterator[World]:
    """The shared world, reset for this test; after it, strict contract checking."""
    world = mockgen_servers.world
    world.reset()
    yield world
    if request.node.get_closest_marker(LENIENT_MARK) is not None:
        return
    entries = list(world.journal)
    broken = [
        f"{entry.method} {entry.path} -> {entry.status}: {violation.message}"
        for entry in entries
        for violation in entry.violations
    ]
    total = len(broken) + sum(entry.violations_omitted for entry in entries)
    if total:
        shown = "\n  ".join(broken[:20])
        more = f"\n  ... and {total - 20} more" if total > 20 else ""
        pytest.fail(f"{total} contract violation(s) in this test:\n  {shown}{more}", pytrace=False)


@pytest.fixture
def letta_mock(mock_world: World, mockgen_servers: MockServers) -> LettaMock:
    return LettaMock(mock_world, mockgen_servers.endpoints.letta)


@pytest.fixture
def matrix_mock(mock_world: World, mockgen_servers: MockServers) -> MatrixMock:
    return MatrixMock(mock_world, mockgen_servers.endpoints.matrix)
