"""Every error the contracts document, on every operation the bridge calls, injected into a sync, with the
reaction it should get: retried and recovered (429, 5xx, a refused token), worked around (a refused join,
a vanished space), reported for the one agent it concerns, or stopping the run with a clear error.

The cases come from the specs themselves (each operation's documented statuses and their `errcode` enums),
so an error added to a spec is a new case here, and one without a known reaction fails loudly."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contracts.harness.fuzz import FuzzContext
from contracts.validation import ContractValidator, validator_for
from letta_matrix_reference.bridge import ApiError, ConfigurationError, SyncReport
from letta_matrix_reference.bridge.store import MAPPING_FILE
from letta_matrix_reference.bridge.target import convergence_problems, sync_against
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import Sleeps

RETRY_AFTER_MS = 1500  # the mock's Retry-After header says 2 (seconds, rounded up): the longer one wins
NEW_BOT = {"bot_user": "newbot", "bot_password": "newbot-password"}


@dataclass
class World:
    letta: LettaMock
    matrix: MatrixMock
    context: FuzzContext
    sleeps: Sleeps = field(default_factory=Sleeps)

    @property
    def data_dir(self) -> Path:
        return self.context.workdir

    async def sync(self, **settings: Any) -> SyncReport:
        return await sync_against(self.context, sleep=self.sleeps, **settings)


Setup = Callable[[World], Awaitable[None]]


async def synced(world: World) -> None:
    assert (await world.sync()).ok


async def renamed(world: World) -> None:
    await synced(world)
    world.letta.rename_agent(world.letta.world.letta.list_agents()[0]["id"], "renamed")


async def room_id_lost(world: World) -> None:
    """The agent's user exists but its room does not: the next sync looks among the user's rooms."""
    world.matrix.inject("createRoom", status=403, after=1)
    assert not (await world.sync()).ok


async def room_id_forgotten(world: World) -> None:
    """The agent's room exists but the mapping lost its id: the next sync reads the m.room.create of the
    user's rooms to find it by its marker."""
    await synced(world)
    path = world.data_dir / MAPPING_FILE
    saved = json.loads(path.read_text())
    for entry in saved["agents"].values():
        entry.update(room_id=None, room_name=None, space_child=None, space_parent=None, joined=[])
    path.write_text(json.dumps(saved))


async def join_refused_once(world: World) -> None:
    """The admin's join to the agent room is refused once: the agent user invites it again."""
    world.matrix.inject("joinRoomById", status=403, after=1)


@dataclass(frozen=True)
class Reach:
    """How a sync gets to call an operation: what happens first, and how many matching calls go by."""

    setup: Setup | None = None
    after: int = 0
    settings: dict[str, str] = field(default_factory=dict)


REACH: dict[str, Reach] = {
    "login": Reach(),  # the admin's login opens every run
    "register": Reach(),
    "setDisplayName": Reach(),
    "createRoom": Reach(after=1),  # the space comes first: hit the agent's room
    "joinRoomById": Reach(after=1),  # the bot joining the space comes first: hit the agent's room
    "setRoomStateWithKey": Reach(),  # the m.space.child
    "setRoomState": Reach(setup=renamed),  # the m.room.name of a rename
    "getRoomStateWithKey": Reach(setup=synced),  # the space check of every later run
    "getRoomStateEvent": Reach(setup=room_id_forgotten),
    "getJoinedRooms": Reach(setup=room_id_lost),
    "inviteUser": Reach(setup=join_refused_once),
    "adminGetUser": Reach(settings=NEW_BOT),  # only for a bot that cannot log in
    "adminPutUser": Reach(settings=NEW_BOT),
    "listAgents": Reach(),
}


@dataclass(frozen=True)
class Case:
    operation: str
    status: int
    errcode: str | None

    def __str__(self) -> str:
        return f"{self.operation}-{self.status}" + (f"-{self.errcode}" if self.errcode else "")


def cases(validator: ContractValidator, operations: list[str]) -> list[Case]:
    found: list[Case] = []
    for operation_id in operations:
        operation = validator.operations[operation_id]
        for status in operation.documented_statuses:
            if status < 400:
                continue
            response = operation.response(status)
            assert response is not None
            media = response.media_types.get("application/json")
            schema: Any = media[0] if media else {}
            errcodes = schema.get("properties", {}).get("errcode", {}).get("enum") or [None]
            found.extend(Case(operation_id, status, errcode) for errcode in errcodes)
    return found


MATRIX_OPERATIONS = [op for op in REACH if op != "listAgents"]
CASES = cases(validator_for("matrix"), MATRIX_OPERATIONS) + cases(validator_for("letta"), ["listAgents"])
FIRST_OF_STATUS = {
    next(c for c in CASES if (c.operation, c.status) == (case.operation, case.status)) for case in CASES
}


def reaction(case: Case) -> str:
    """What the bridge should do about this error."""
    operation, status, errcode = case.operation, case.status, case.errcode
    if operation == "listAgents":
        return {401: "configuration", 422: "aborted"}.get(status, "recovered")
    if status in (429, 500):
        return "recovered"  # retried
    if status == 401 and operation not in ("register", "login") and errcode != "M_USER_LOCKED":
        # The client logs in again (a registration's 401 is its auth dance; a locked account stays locked,
        # so it is the operation's failure like any other).
        return "recovered"
    if operation in ("login", "adminGetUser", "adminPutUser"):
        if operation == "adminGetUser" and status == 404:
            return "recovered"  # "no such user": the bot is created, as without the fault
        return "configuration"  # the admin cannot log in, or the bot cannot be made
    if operation == "register" and status == 403:
        return "configuration"  # registration is closed: no agent can get a user
    if operation == "getRoomStateWithKey":
        # The admin's own m.room.member in the space, read to see whether the admin is still in it. 403
        # means "not in the room" (never was, banned, or the server forgot the room) and 404 M_NOT_FOUND
        # "no membership there at all": the admin can no longer add rooms to it, so a new space is made.
        # 404 M_UNRECOGNIZED (no such route) and 400 say nothing about the space: the check failed, and the
        # run stops before touching any agent.
        return "space recreated" if status == 403 or errcode == "M_NOT_FOUND" else "aborted"
    if operation == "joinRoomById" and status == 403:
        return "invited again"
    # Everything else is about one agent. That includes getRoomStateEvent, the m.room.create of the agent
    # user's rooms read to find its room by the bridge's marker: a room it could not check might be the one
    # it looks for, so the agent stops instead of making a second room.
    return "agent failed"


def test_every_case_has_a_way_to_be_reached() -> None:
    assert {case.operation for case in CASES} == set(REACH)
    assert len(CASES) > 100


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_documented_error(
    case: Case, letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    world = World(letta_mock, matrix_mock, fuzz_context)
    (agent,) = letta_mock.add_agents(1)
    reach = REACH[case.operation]
    if reach.setup is not None:
        await reach.setup(world)
    mock = letta_mock if case.operation == "listAgents" else matrix_mock
    fault: dict[str, Any] = {"status": case.status, "after": reach.after}
    if case.status == 429:
        fault = {"rate_limit": {"retry_after_ms": RETRY_AFTER_MS}, "after": reach.after}
    elif case.operation == "register" and case.status == 401:
        fault["after"] = 1  # the dummy stage answered by another 401: the server wants more than we offer
    elif case.errcode is not None:
        fault["body"] = {"errcode": case.errcode, "error": "injected"}
    injected = mock.inject(case.operation, **fault)
    logins = matrix_mock.calls("login")
    rooms = matrix_mock.calls("createRoom")
    expected = reaction(case)

    if expected in ("configuration", "aborted"):
        with pytest.raises(ConfigurationError if expected == "configuration" else ApiError) as raised:
            await world.sync(**reach.settings)
        assert injected.fired == 1
        if isinstance(raised.value, ApiError):
            assert (raised.value.status, raised.value.errcode) == (case.status, case.errcode)
        return

    report = await world.sync(**reach.settings)
    assert injected.fired == 1
    bot = "@newbot:matrix.test" if reach.settings else None
    if expected == "agent failed":
        [failure] = report.failed
        assert failure.agent_id == agent.id
        assert str(case.status) in failure.reason or failure.error == "AgentUserConflict"
        assert case.errcode is None or case.errcode in failure.reason or failure.error == "AgentUserConflict"
        if (case.operation, case.errcode) == ("register", "M_USER_IN_USE"):
            assert failure.error == "AgentUserConflict"  # "taken", and our password does not log in
        if case not in FIRST_OF_STATUS:
            return
        # Nothing was lost: the next run, without the fault, converges (with no second room or user).
        # (Once per operation and status: which errcode stopped the first run makes no difference here.)
        matrix_mock.clear_faults()
        report = await world.sync(**reach.settings)
    assert report.ok, report.failed
    space_id = json.loads((world.data_dir / MAPPING_FILE).read_text())["space_id"]
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context, bot=bot, space_id=space_id) == []
    if case.status == 429:
        assert 2.0 in world.sleeps.delays
    if case.status == 401 and expected == "recovered":
        assert matrix_mock.calls("login") > logins  # logged in again
    if expected == "space recreated":
        assert matrix_mock.calls("createRoom") == rooms + 1
    if expected == "invited again":
        assert matrix_mock.calls("inviteUser") >= 1
