"""The bridge resuming after faults and crashes: rooms and spaces whose answers were lost are found again,
never made twice; a crash while writing the mapping keeps the old file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from contracts.harness.fuzz import FuzzContext
from letta_matrix_reference.bridge.matrix import MatrixClient
from letta_matrix_reference.bridge.store import MAPPING_FILE, MappingFile, Persister
from letta_matrix_reference.bridge.target import (
    check_converged,
    convergence_problems,
    sync_against,
)
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import (
    ADMIN,
    BOT,
    TIMEOUT,
    Run,
    Sleeps,
    converged,
    forget_room,
    half_made_room,
    leftovers,
    mapping,
    rooms_of,
    spaces_in,
)


async def test_resume_after_a_createroom_outage_makes_no_duplicate(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    agents = letta_mock.add_agents(5)
    # The space gets made; then every agent room fails, every time, until the outage ends.
    matrix_mock.inject("createRoom", status=500, times=0, after=1)
    report = await bridge_sync(max_attempts=2)
    assert {failure.agent_id for failure in report.failed} == {agent.id for agent in agents}
    assert all("createRoom" in failure.reason and "500" in failure.reason for failure in report.failed)
    saved = mapping(data_dir)["agents"]
    assert all(entry["registered"] and entry["room_id"] is None for entry in saved.values())
    matrix_mock.clear_faults()
    report = await bridge_sync()
    assert report.ok
    assert (report.users_created, report.rooms_created) == (0, 5)
    converged(matrix_mock, fuzz_context)
    assert matrix_mock.calls("register") == 10  # no agent registered twice


async def test_a_room_whose_id_was_lost_is_found_again(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    (agent,) = letta_mock.add_agents(1)
    await bridge_sync()
    room_id = forget_room(data_dir, agent.id)
    looked = matrix_mock.calls("getJoinedRooms")
    report = await bridge_sync()
    assert (report.ok, report.rooms_created) == (True, 0)
    assert matrix_mock.calls("getJoinedRooms") == looked + 1
    assert mapping(data_dir)["agents"][agent.id]["room_id"] == room_id
    converged(matrix_mock, fuzz_context)


@pytest.mark.parametrize(
    "late",
    [
        pytest.param(0.0, id="at-the-first-pause"),
        # Longer than any retry backoff: a bridge that looked only once would have made a second room.
        pytest.param(TIMEOUT / 2, id="after-half-the-timeout"),
    ],
)
async def test_a_room_made_after_its_answer_was_lost_is_found_and_completed(
    letta_mock: LettaMock, matrix_mock: MatrixMock, data_dir: Path, late: float, fuzz_context: FuzzContext
) -> None:
    """The agent room's createRoom loses its answer, and the server makes the room only `late` seconds
    into the bridge's waiting (virtual seconds: the sleep counts them, nothing waits), and only half of
    it. The bridge keeps looking for longer than a request may take, finds it instead of making a second,
    and does what the half-made room lacks: its name, its parent, its members."""
    (agent,) = letta_mock.add_agents(1)
    matrix_mock.inject("createRoom", drop_connection=True, after=1)  # the space first, then the room
    waited = 0.0
    made: list[str] = []

    def server_finishes() -> None:
        if not made:
            made.append(half_made_room(matrix_mock, agent.id))

    async def sleep(seconds: float) -> None:
        nonlocal waited
        waited += seconds
        if waited >= late:
            server_finishes()

    report = await sync_against(fuzz_context, sleep=sleep, request_timeout=TIMEOUT)
    server_finishes()  # a server finishes what it started, however late
    assert report.ok
    assert report.rooms_created == 0  # found, not made
    assert matrix_mock.calls("createRoom") == 2  # the space and the lost one: not sent again
    assert mapping(data_dir)["agents"][agent.id]["room_id"] == made[0]
    converged(matrix_mock, fuzz_context)


async def test_a_room_that_never_appears_is_asked_for_again_once_no_request_can_still_be_running(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    sleeps: Sleeps,
    fuzz_context: FuzzContext,
) -> None:
    letta_mock.add_agents(1)
    matrix_mock.inject("createRoom", drop_connection=True, after=1)
    report = await bridge_sync()
    assert (report.ok, report.rooms_created) == (True, 1)
    # Looked at once, then after pauses that double, until more than the request timeout had passed.
    assert sleeps.delays == [TIMEOUT / 8, TIMEOUT / 4, TIMEOUT / 2, TIMEOUT]
    assert matrix_mock.calls("getJoinedRooms") == 1 + 5  # the admin's, for the space, then the agent's
    assert matrix_mock.calls("createRoom") == 3
    converged(matrix_mock, fuzz_context)


async def test_of_several_rooms_with_an_agents_marker_the_oldest_is_kept_and_none_is_added(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    fuzz_context: FuzzContext,
) -> None:
    """A server slower than the bridge's patience made an agent's room twice, and the mapping knows
    neither. The bridge takes the oldest, leaves the other alone (it may hold messages) and says so."""
    (agent,) = letta_mock.add_agents(1)
    await bridge_sync()
    newer = forget_room(data_dir, agent.id)
    older = half_made_room(matrix_mock, agent.id)
    rooms = matrix_mock.world.matrix.rooms
    create = rooms[older].state[("m.room.create", "")]
    create.origin_server_ts = rooms[newer].state[("m.room.create", "")].origin_server_ts - 1000
    rooms_before = matrix_mock.calls("createRoom")
    report = await bridge_sync()
    assert (report.ok, report.rooms_created) == (True, 0)
    assert matrix_mock.calls("createRoom") == rooms_before
    assert mapping(data_dir)["agents"][agent.id]["room_id"] == older
    assert f"found 2 rooms marked as the room of agent {agent.id}" in caplog.text
    # The world holds the duplicate (nothing is deleted); the kept room is complete.
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context) == [
        f"agent {agent.id} has 2 rooms, not one"
    ]
    kept = rooms_of(matrix_mock)[older]
    assert (kept["name"], kept["members"][ADMIN], kept["members"][BOT]) == (agent.name, "join", "join")
    assert kept["room_id"] in rooms_of(matrix_mock)[mapping(data_dir)["space_id"]]["children"]
    # Later runs keep the mapping's room without looking again.
    last = matrix_mock.world.journal.last_seq
    assert (await bridge_sync()).ok
    assert "getJoinedRooms" not in [str(e.operation) for e in matrix_mock.world.journal.entries(since=last)]
    assert mapping(data_dir)["agents"][agent.id]["room_id"] == older


async def test_the_space_is_recreated_when_the_admin_left_it(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    """A user who left a room still reads its state, as it was when they left: the bridge goes by the
    admin's own membership, and a space the admin left is one it can no longer add rooms to."""
    letta_mock.add_agents(3)
    await bridge_sync()
    old_space = mapping(data_dir)["space_id"]
    store = matrix_mock.world.matrix
    store.leave(store.user_by_name("admin"), old_space)
    letta_mock.add_agents(1, prefix="after")  # its room must go into a space the admin can still write to
    report = await bridge_sync()
    assert report.ok
    new_space = mapping(data_dir)["space_id"]
    assert new_space != old_space
    rooms = rooms_of(matrix_mock)
    assert len(rooms[new_space]["children"]) == 4
    assert all(room["parents"] == [new_space] for room in rooms.values() if not room["is_space"])
    assert (await bridge_sync()).ok
    assert mapping(data_dir)["space_id"] == new_space
    assert check_converged(matrix_mock.snapshot(), fuzz_context) == []


async def test_a_fault_mid_sync_leaves_a_complete_mapping(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    letta_mock.add_agents(6)
    await bridge_sync()
    more = letta_mock.add_agents(4, prefix="late")
    # Registration breaks down partway through the new agents, taken one at a time (newest first): the
    # first is registered (two calls: the 401 that opens the session, then the dummy stage), the second
    # fails at its dummy stage, the others at their first call.
    matrix_mock.inject("register", status=500, times=0, after=3)
    report = await bridge_sync(max_attempts=1, concurrency=1)
    assert {failure.agent_id for failure in report.failed} == {agent.id for agent in more[:3]}
    saved = mapping(data_dir)
    assert len(saved["agents"]) == 10
    assert {agent.id for agent in more} <= set(saved["agents"])
    state = MappingFile(data_dir / MAPPING_FILE).load()  # loadable by the bridge itself
    assert sum(record.registered for record in state.agents.values()) == 10 - len(report.failed)
    matrix_mock.clear_faults()
    assert (await bridge_sync()).ok
    converged(matrix_mock, fuzz_context)


async def test_a_bridge_removes_what_a_crashed_write_left_behind(
    letta_mock: LettaMock, bridge_sync: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(1)
    await bridge_sync()
    (data_dir / f".{MAPPING_FILE}.crashed.tmp").write_text('{"half": ')
    assert leftovers(data_dir) != []
    await bridge_sync()
    assert leftovers(data_dir) == []


async def test_a_crash_while_writing_the_mapping_keeps_the_old_file(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    fuzz_context: FuzzContext,
) -> None:
    from letta_matrix_reference.bridge import StoreError

    letta_mock.add_agents(2)
    await bridge_sync()
    path = data_dir / MAPPING_FILE
    before = path.read_bytes()
    letta_mock.add_agents(2, prefix="new")

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match="No space left"):
        await bridge_sync()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(data_dir) == []
    assert len(MappingFile(path).load().agents) == 2
    # The failed write was the one saving the new agents' passwords, before any of them was registered.
    assert matrix_mock.calls("register") == 4
    assert (await bridge_sync()).ok
    converged(matrix_mock, fuzz_context)


async def test_a_space_made_by_a_run_killed_before_saving_it_is_found_again(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    fuzz_context: FuzzContext,
) -> None:
    """The first run is killed as the space's createRoom answers: nothing more reaches the disk. The next
    run knows the bridge's id (saved before the space was asked for) and finds the space by it."""
    letta_mock.add_agents(1)
    create_room, commit = MatrixClient.create_room, Persister.commit
    killed = False

    async def create_then_die(self: MatrixClient, *args: Any, **kwargs: Any) -> Any:
        nonlocal killed
        await create_room(self, *args, **kwargs)
        killed = True
        raise SystemExit("killed")

    async def commit_unless_killed(self: Persister) -> None:
        if killed:
            raise SystemExit("killed")
        await commit(self)

    monkeypatch.setattr(MatrixClient, "create_room", create_then_die)
    monkeypatch.setattr(Persister, "commit", commit_unless_killed)
    with pytest.raises(SystemExit):
        await bridge_sync()
    monkeypatch.undo()
    [space] = spaces_in(matrix_mock)
    assert mapping(data_dir)["space_id"] is None
    assert (await bridge_sync()).ok
    assert spaces_in(matrix_mock) == [space] == [mapping(data_dir)["space_id"]]
    converged(matrix_mock, fuzz_context)


async def test_a_space_whose_id_was_lost_is_found_again(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    letta_mock.add_agents(1)
    await bridge_sync()
    path = data_dir / MAPPING_FILE
    saved = json.loads(path.read_text())
    space, saved["space_id"] = saved["space_id"], None
    path.write_text(json.dumps(saved))
    assert (await bridge_sync()).ok
    assert spaces_in(matrix_mock) == [space] == [mapping(data_dir)["space_id"]]
    converged(matrix_mock, fuzz_context)
