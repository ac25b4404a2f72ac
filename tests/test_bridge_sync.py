"""The bridge's syncs against the strict mocks: convergence, what each sync sends, renames, removals, and
resuming after faults and crashes."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from contracts.harness.fuzz import FuzzContext
from letta_matrix_reference.bridge import ApiError, ConfigurationError, SyncReport
from letta_matrix_reference.bridge.matrix import MatrixClient
from letta_matrix_reference.bridge.rooms import ROOM_MARKER
from letta_matrix_reference.bridge.store import MAPPING_FILE, MappingFile, Persister
from letta_matrix_reference.bridge.target import (
    check_converged,
    convergence_problems,
    load_state,
    sync_against,
)
from letta_matrix_reference.bridge.users import agent_localpart
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import Sleeps

Run = Callable[..., Awaitable[SyncReport]]
CREATIONS = ("register", "createRoom", "inviteUser", "adminPutUser")
TIMEOUT = 10.0  # the request timeout of these syncs (as the mock target sets it)
ADMIN, BOT = "@admin:matrix.test", "@letta:matrix.test"


@pytest.fixture
def run(fuzz_context: FuzzContext, sleeps: Sleeps) -> Run:
    """One sync, as one `python -m letta_matrix_reference.bridge sync --once` would do it (same data dir
    every time)."""

    async def sync(**settings: Any) -> SyncReport:
        return await sync_against(fuzz_context, sleep=sleeps, **settings)

    return sync


def mapping(data_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((data_dir / MAPPING_FILE).read_text())
    return loaded


def leftovers(data_dir: Path) -> list[str]:
    return [path.name for path in data_dir.iterdir() if path.name.endswith(".tmp")]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def rooms_of(matrix_mock: MatrixMock) -> dict[str, dict[str, Any]]:
    return {room["room_id"]: room for room in matrix_mock.snapshot()["rooms"]}


def converged(matrix_mock: MatrixMock, fuzz_context: FuzzContext) -> None:
    """The world is as promised, and the mapping agrees with it."""
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context) == []
    assert check_converged(matrix_mock.snapshot(), fuzz_context) == []


def forget_room(data_dir: Path, agent_id: str) -> str:
    """The bridge crashed between createRoom and saving its answer: the mapping does not know the room."""
    path = data_dir / MAPPING_FILE
    saved = json.loads(path.read_text())
    room_id: str = saved["agents"][agent_id]["room_id"]
    saved["agents"][agent_id].update(room_id=None, room_name=None, space_parent=None, joined=[])
    path.write_text(json.dumps(saved))
    return room_id


def half_made_room(matrix_mock: MatrixMock, agent_id: str) -> str:
    """A room the agent's user made with the bridge's marker and nothing else: no name, no invites, no
    parent, as a createRoom the server stopped working on midway would leave it."""
    store = matrix_mock.world.matrix
    user = store.user_by_name(agent_localpart(agent_id))
    return store.create_room(user, {"preset": "private_chat", "creation_content": {ROOM_MARKER: agent_id}})


# Every shape of the last page at the default page size of 50: none, short, full (a bare array then needs
# one more, empty, page), full twice, a short one after full ones, and five pages.
@pytest.mark.parametrize("count", [0, 1, 50, 100, 101, 250])
@pytest.mark.parametrize("fmt", ["array", "envelope"])
async def test_sync_converges_for_both_list_formats(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    run: Run,
    data_dir: Path,
    count: int,
    fmt: str,
    fuzz_context: FuzzContext,
) -> None:
    letta_mock.set_format(agents=fmt)
    agents = letta_mock.add_agents(count)
    report = await run(concurrency=16)
    assert report.ok
    assert (report.agents_seen, report.users_created, report.rooms_created) == (count, count, count)
    converged(matrix_mock, fuzz_context)
    # Pages of 50: a bare array ends at its first short (or empty) page, an envelope at a null cursor.
    full, rest = divmod(count, 50)
    assert letta_mock.calls("listAgents") == (full + 1 if fmt == "array" else max(1, full + (rest > 0)))
    assert matrix_mock.calls("register") == 2 * count  # the 401 that opens the session, then the dummy stage
    assert matrix_mock.calls("createRoom") == count + 1  # the space, then a room per agent
    saved = load_state(data_dir)
    assert set(saved) == {agent.id for agent in agents}
    assert all(entry["status"] == "active" and entry["room_id"] for entry in saved.values())


async def test_names_with_surrounding_whitespace_converge_and_stay_converged(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, fuzz_context: FuzzContext
) -> None:
    """Synapse keeps a display name stripped (`"0 "` as `"0"`); the bridge neither fights that on every sync
    nor counts it as a difference (make fuzz found the oracle expecting the name as sent)."""
    for name in ("0 ", "  padded  ", "   "):
        letta_mock.add_agent(name)
    assert (await run()).ok
    converged(matrix_mock, fuzz_context)
    renames = matrix_mock.calls("setDisplayName")
    assert (await run()).ok
    assert matrix_mock.calls("setDisplayName") == renames
    converged(matrix_mock, fuzz_context)


async def test_an_unchanged_world_costs_only_the_listing_the_logins_and_the_space_check(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(3)
    await run()
    before = mapping(data_dir)
    mtime = (data_dir / MAPPING_FILE).stat().st_mtime_ns
    last = matrix_mock.world.journal.last_seq
    report = await run()
    assert report.ok
    assert (report.users_created, report.rooms_created, report.mapping_writes) == (0, 0, 0)
    sent = [str(entry.operation) for entry in matrix_mock.world.journal.entries(since=last)]
    assert sorted(sent) == ["getRoomStateWithKey", "listAgents", "login", "login"]
    assert mapping(data_dir) == before
    assert (data_dir / MAPPING_FILE).stat().st_mtime_ns == mtime  # not even rewritten


async def test_one_bridge_syncing_twice_logs_in_once(
    letta_mock: LettaMock, matrix_mock: MatrixMock, sleeps: Sleeps, fuzz_context: FuzzContext
) -> None:
    from letta_matrix_reference.bridge import Bridge
    from letta_matrix_reference.bridge.target import mock_config

    letta_mock.add_agents(2)
    async with Bridge(mock_config(fuzz_context), sleep=sleeps) as bridge:
        assert (await bridge.sync_once()).ok
        assert (await bridge.sync_once()).ok
    assert matrix_mock.calls("login") == 2  # the admin and the bot, once each


async def test_logins_reuse_their_devices_across_runs(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run
) -> None:
    letta_mock.add_agents(1)
    for _ in range(3):
        assert (await run()).ok
    devices = {user["user_id"]: user["devices"] for user in matrix_mock.snapshot()["users"]}
    assert devices["@admin:matrix.test"] == devices["@letta:matrix.test"] == 1


async def test_rename_changes_the_display_name_and_the_room_name_only(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, fuzz_context: FuzzContext
) -> None:
    first, _ = letta_mock.add_agents(2)
    await run()
    letta_mock.rename_agent(first.id, "Renamed One ✓")
    last = matrix_mock.world.journal.last_seq
    report = await run()
    assert (report.renamed, report.users_created, report.rooms_created) == (1, 0, 0)
    converged(matrix_mock, fuzz_context)
    sent = sorted(str(entry.operation) for entry in matrix_mock.world.journal.entries(since=last))
    assert sent == ["getRoomStateWithKey", "listAgents", "login", "login", "setDisplayName", "setRoomState"]
    user = f"@{agent_localpart(first.id)}:matrix.test"
    assert {u["user_id"]: u["displayname"] for u in matrix_mock.snapshot()["users"]}[user] == "Renamed One ✓"


async def test_a_long_name_is_cut_to_what_a_display_name_may_hold(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agent("n" * 300)
    assert (await run()).ok
    converged(matrix_mock, fuzz_context)


async def test_removal_keeps_user_and_room_and_reappearance_reactivates(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    _, gone = letta_mock.add_agents(2)
    await run()
    rooms_before = rooms_of(matrix_mock)
    letta_mock.remove_agent(gone.id)
    report = await run()
    assert report.removed == 1
    entry = mapping(data_dir)["agents"][gone.id]
    assert entry["status"] == "removed"
    assert entry["removed_at"]
    assert rooms_of(matrix_mock).keys() == rooms_before.keys()  # nothing deleted
    assert (await run()).removed == 0  # already marked
    # It comes back (same id): reactivated, nothing created.
    letta_mock.add_agent(gone.name, agent_id=gone.id)
    last = matrix_mock.world.journal.last_seq
    report = await run()
    assert (report.reactivated, report.users_created, report.rooms_created) == (1, 0, 0)
    assert mapping(data_dir)["agents"][gone.id]["status"] == "active"
    assert mapping(data_dir)["agents"][gone.id]["removed_at"] is None
    assert not [e for e in matrix_mock.world.journal.entries(since=last) if e.operation in CREATIONS]
    converged(matrix_mock, fuzz_context)


async def test_resume_after_a_createroom_outage_makes_no_duplicate(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    agents = letta_mock.add_agents(5)
    # The space gets made; then every agent room fails, every time, until the outage ends.
    matrix_mock.inject("createRoom", status=500, times=0, after=1)
    report = await run(max_attempts=2)
    assert {failure.agent_id for failure in report.failed} == {agent.id for agent in agents}
    assert all("createRoom" in failure.reason and "500" in failure.reason for failure in report.failed)
    saved = mapping(data_dir)["agents"]
    assert all(entry["registered"] and entry["room_id"] is None for entry in saved.values())
    matrix_mock.clear_faults()
    report = await run()
    assert report.ok
    assert (report.users_created, report.rooms_created) == (0, 5)
    converged(matrix_mock, fuzz_context)
    assert matrix_mock.calls("register") == 10  # no agent registered twice


async def test_a_room_whose_id_was_lost_is_found_again(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    (agent,) = letta_mock.add_agents(1)
    await run()
    room_id = forget_room(data_dir, agent.id)
    looked = matrix_mock.calls("getJoinedRooms")
    report = await run()
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
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, sleeps: Sleeps, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(1)
    matrix_mock.inject("createRoom", drop_connection=True, after=1)
    report = await run()
    assert (report.ok, report.rooms_created) == (True, 1)
    # Looked at once, then after pauses that double, until more than the request timeout had passed.
    assert sleeps.delays == [TIMEOUT / 8, TIMEOUT / 4, TIMEOUT / 2, TIMEOUT]
    assert matrix_mock.calls("getJoinedRooms") == 1 + 5  # the admin's, for the space, then the agent's
    assert matrix_mock.calls("createRoom") == 3
    converged(matrix_mock, fuzz_context)


async def test_of_several_rooms_with_an_agents_marker_the_oldest_is_kept_and_none_is_added(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    run: Run,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    fuzz_context: FuzzContext,
) -> None:
    """A server slower than the bridge's patience made an agent's room twice, and the mapping knows
    neither. The bridge takes the oldest, leaves the other alone (it may hold messages) and says so."""
    (agent,) = letta_mock.add_agents(1)
    await run()
    newer = forget_room(data_dir, agent.id)
    older = half_made_room(matrix_mock, agent.id)
    rooms = matrix_mock.world.matrix.rooms
    create = rooms[older].state[("m.room.create", "")]
    create.origin_server_ts = rooms[newer].state[("m.room.create", "")].origin_server_ts - 1000
    rooms_before = matrix_mock.calls("createRoom")
    report = await run()
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
    assert (await run()).ok
    assert "getJoinedRooms" not in [str(e.operation) for e in matrix_mock.world.journal.entries(since=last)]
    assert mapping(data_dir)["agents"][agent.id]["room_id"] == older


async def test_the_admin_and_the_bot_get_power_level_100_where_the_bridge_makes_rooms(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path
) -> None:
    (agent,) = letta_mock.add_agents(1)
    assert (await run()).ok
    rooms = matrix_mock.world.matrix.rooms
    saved = mapping(data_dir)
    space, room = rooms[saved["space_id"]], rooms[saved["agents"][agent.id]["room_id"]]
    # Room version 12: the creator (the admin, the agent's user) outranks every level and is not listed.
    assert (space.version, space.creator) == ("12", ADMIN)
    assert space.content("m.room.power_levels")["users"] == {BOT: 100}
    assert room.creator == f"@{agent_localpart(agent.id)}:matrix.test"
    assert room.content("m.room.power_levels")["users"] == {ADMIN: 100, BOT: 100}


async def test_a_space_link_without_via_does_not_count(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    """The spec ignores an m.space.child or m.space.parent without servers to join through."""
    (agent,) = letta_mock.add_agents(1)
    assert (await run()).ok
    converged(matrix_mock, fuzz_context)
    store = matrix_mock.world.matrix
    saved = mapping(data_dir)
    space, room = saved["space_id"], saved["agents"][agent.id]["room_id"]
    store.set_state(store.user_by_name("admin"), space, "m.space.child", room, {"suggested": True})
    store.set_state(store.user_by_name(agent_localpart(agent.id)), room, "m.space.parent", space, {"via": []})
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context) == [
        f"room {room} is not a child of the space",
        f"room {room} has parents [], not the space",
    ]


async def test_the_space_is_recreated_when_the_admin_left_it(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    """A user who left a room still reads its state, as it was when they left: the bridge goes by the
    admin's own membership, and a space the admin left is one it can no longer add rooms to."""
    letta_mock.add_agents(3)
    await run()
    old_space = mapping(data_dir)["space_id"]
    store = matrix_mock.world.matrix
    store.leave(store.user_by_name("admin"), old_space)
    letta_mock.add_agents(1, prefix="after")  # its room must go into a space the admin can still write to
    report = await run()
    assert report.ok
    new_space = mapping(data_dir)["space_id"]
    assert new_space != old_space
    rooms = rooms_of(matrix_mock)
    assert len(rooms[new_space]["children"]) == 4
    assert all(room["parents"] == [new_space] for room in rooms.values() if not room["is_space"])
    assert (await run()).ok
    assert mapping(data_dir)["space_id"] == new_space
    assert check_converged(matrix_mock.snapshot(), fuzz_context) == []


async def test_a_fault_mid_sync_leaves_a_complete_mapping(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(6)
    await run()
    more = letta_mock.add_agents(4, prefix="late")
    # Registration breaks down partway through the new agents, taken one at a time (newest first): the
    # first is registered (two calls: the 401 that opens the session, then the dummy stage), the second
    # fails at its dummy stage, the others at their first call.
    matrix_mock.inject("register", status=500, times=0, after=3)
    report = await run(max_attempts=1, concurrency=1)
    assert {failure.agent_id for failure in report.failed} == {agent.id for agent in more[:3]}
    saved = mapping(data_dir)
    assert len(saved["agents"]) == 10
    assert {agent.id for agent in more} <= set(saved["agents"])
    state = MappingFile(data_dir / MAPPING_FILE).load()  # loadable by the bridge itself
    assert sum(record.registered for record in state.agents.values()) == 10 - len(report.failed)
    matrix_mock.clear_faults()
    assert (await run()).ok
    converged(matrix_mock, fuzz_context)


async def test_a_crash_while_writing_the_mapping_keeps_the_old_file(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    run: Run,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    fuzz_context: FuzzContext,
) -> None:
    from letta_matrix_reference.bridge import StoreError

    letta_mock.add_agents(2)
    await run()
    path = data_dir / MAPPING_FILE
    before = path.read_bytes()
    letta_mock.add_agents(2, prefix="new")

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match="No space left"):
        await run()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(data_dir) == []
    assert len(MappingFile(path).load().agents) == 2
    # The failed write was the one saving the new agents' passwords, before any of them was registered.
    assert matrix_mock.calls("register") == 4
    assert (await run()).ok
    converged(matrix_mock, fuzz_context)


async def test_mapping_file_is_private_from_its_first_byte(
    letta_mock: LettaMock, run: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(1)
    await run()
    assert mode(data_dir / MAPPING_FILE) == 0o600
    assert mode(data_dir) == 0o700


async def test_an_existing_agent_user_with_another_password_is_a_clear_conflict(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run
) -> None:
    taken, _ = letta_mock.add_agents(2)
    user_id = matrix_mock.add_user(agent_localpart(taken.id), "someone-elses-password")
    report = await run()
    [failure] = report.failed
    assert (failure.agent_id, failure.error) == (taken.id, "AgentUserConflict")
    assert user_id in failure.reason
    assert "password" in failure.reason
    assert report.users_created == 1  # the other agent went ahead


async def test_an_existing_agent_user_with_our_password_is_adopted(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    """A run registered the user, then died before recording it; the password was saved first."""
    (agent,) = letta_mock.add_agents(1)
    matrix_mock.inject("createRoom", status=403, after=1)  # stop this agent right after registering
    await run()
    path = data_dir / MAPPING_FILE
    saved = json.loads(path.read_text())
    saved["agents"][agent.id].update(registered=False, access_token=None)
    path.write_text(json.dumps(saved))
    report = await run()
    assert (report.ok, report.users_created, report.rooms_created) == (True, 0, 1)
    assert matrix_mock.calls("register") == 3  # two from the first run, one M_USER_IN_USE
    converged(matrix_mock, fuzz_context)


async def test_a_missing_bot_is_created_with_the_admin_api(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(1)
    report = await run(bot_user="newbot", bot_password="newbot-password")
    assert report.ok
    assert matrix_mock.calls("adminPutUser") == 1
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context, bot="@newbot:matrix.test") == []
    assert (await run(bot_user="newbot", bot_password="newbot-password")).ok
    assert matrix_mock.calls("adminPutUser") == 1


async def test_a_bot_with_another_password_is_never_overwritten(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run
) -> None:
    with pytest.raises(ConfigurationError, match=r"@letta:matrix\.test exists but refuses"):
        await run(bot_password="wrong")
    assert matrix_mock.calls("adminPutUser") == 0


async def test_a_wrong_admin_password_names_the_admin(run: Run) -> None:
    with pytest.raises(ConfigurationError, match="admin user admin cannot log in"):
        await run(admin_password="wrong")


async def test_a_wrong_letta_token_is_a_configuration_error(run: Run) -> None:
    with pytest.raises(ConfigurationError, match="refused the token"):
        await run(letta_token="wrong")


async def test_listing_failure_aborts_before_anything_is_marked_removed(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(2)
    await run()
    letta_mock.inject("listAgents", status=422, times=0)
    with pytest.raises(ApiError) as raised:
        await run()
    assert raised.value.status == 422
    assert all(entry["status"] == "active" for entry in mapping(data_dir)["agents"].values())


async def test_an_incomplete_listing_marks_nothing_removed(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(5)
    await run(page_limit=2)
    report = await run(page_limit=2, max_pages=1)
    assert (report.listing_complete, report.agents_seen, report.removed) == (False, 2, 0)
    assert not report.ok  # agents it missed are not in sync: the CLI exits 1
    assert all(entry["status"] == "active" for entry in mapping(data_dir)["agents"].values())


def spaces_in(matrix_mock: MatrixMock) -> list[str]:
    return [room["room_id"] for room in matrix_mock.snapshot()["rooms"] if room["is_space"]]


async def test_a_space_made_by_a_run_killed_before_saving_it_is_found_again(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    run: Run,
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
        await run()
    monkeypatch.undo()
    [space] = spaces_in(matrix_mock)
    assert mapping(data_dir)["space_id"] is None
    assert (await run()).ok
    assert spaces_in(matrix_mock) == [space] == [mapping(data_dir)["space_id"]]
    converged(matrix_mock, fuzz_context)


async def test_a_space_whose_id_was_lost_is_found_again(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run, data_dir: Path, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(1)
    await run()
    path = data_dir / MAPPING_FILE
    saved = json.loads(path.read_text())
    space, saved["space_id"] = saved["space_id"], None
    path.write_text(json.dumps(saved))
    assert (await run()).ok
    assert spaces_in(matrix_mock) == [space] == [mapping(data_dir)["space_id"]]
    converged(matrix_mock, fuzz_context)


async def test_a_server_name_the_homeserver_does_not_have_stops_the_run(
    letta_mock: LettaMock, matrix_mock: MatrixMock, run: Run
) -> None:
    """Every user id the bridge makes ends in the server name: with the wrong one, the mapping would record
    users that the homeserver never made (it names them after itself)."""
    letta_mock.add_agents(1)
    with pytest.raises(ConfigurationError, match=r"its server name is 'matrix\.test', not 'wrong\.test'"):
        await run(server_name="wrong.test")
    assert matrix_mock.calls("register") == 0
