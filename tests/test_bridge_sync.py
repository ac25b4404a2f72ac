"""The bridge's syncs against the strict mocks: convergence, what each sync sends, renames, removals, the
credentials it meets (resuming after faults and crashes: test_bridge_recovery.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.harness.fuzz import FuzzContext
from letta_matrix_reference.bridge import ApiError, ConfigurationError
from letta_matrix_reference.bridge.store import MAPPING_FILE
from letta_matrix_reference.bridge.target import (
    convergence_problems,
    load_state,
)
from letta_matrix_reference.bridge.users import agent_localpart
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import (
    ADMIN,
    BOT,
    CREATIONS,
    Run,
    Sleeps,
    converged,
    mapping,
    mode,
    rooms_of,
)


# Every shape of the last page at the default page size of 50: none, short, full (a bare array then needs
# one more, empty, page), full twice, a short one after full ones, and five pages.
@pytest.mark.parametrize("count", [0, 1, 50, 100, 101, 250])
@pytest.mark.parametrize("fmt", ["array", "envelope"])
async def test_sync_converges_for_both_list_formats(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    count: int,
    fmt: str,
    fuzz_context: FuzzContext,
) -> None:
    letta_mock.set_format(agents=fmt)
    agents = letta_mock.add_agents(count)
    report = await bridge_sync(concurrency=16)
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
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, fuzz_context: FuzzContext
) -> None:
    """Synapse keeps a display name stripped (`"0 "` as `"0"`); the bridge neither fights that on every sync
    nor counts it as a difference (make fuzz found the oracle expecting the name as sent)."""
    for name in ("0 ", "  padded  ", "   "):
        letta_mock.add_agent(name)
    assert (await bridge_sync()).ok
    converged(matrix_mock, fuzz_context)
    renames = matrix_mock.calls("setDisplayName")
    assert (await bridge_sync()).ok
    assert matrix_mock.calls("setDisplayName") == renames
    converged(matrix_mock, fuzz_context)


async def test_an_unchanged_world_costs_only_the_listing_the_logins_and_the_space_check(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(3)
    await bridge_sync()
    before = mapping(data_dir)
    mtime = (data_dir / MAPPING_FILE).stat().st_mtime_ns
    last = matrix_mock.world.journal.last_seq
    report = await bridge_sync()
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
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run
) -> None:
    letta_mock.add_agents(1)
    for _ in range(3):
        assert (await bridge_sync()).ok
    devices = {user["user_id"]: user["devices"] for user in matrix_mock.snapshot()["users"]}
    assert devices["@admin:matrix.test"] == devices["@letta:matrix.test"] == 1


async def test_rename_changes_the_display_name_and_the_room_name_only(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, fuzz_context: FuzzContext
) -> None:
    first, _ = letta_mock.add_agents(2)
    await bridge_sync()
    letta_mock.rename_agent(first.id, "Renamed One ✓")
    last = matrix_mock.world.journal.last_seq
    report = await bridge_sync()
    assert (report.renamed, report.users_created, report.rooms_created) == (1, 0, 0)
    converged(matrix_mock, fuzz_context)
    sent = sorted(str(entry.operation) for entry in matrix_mock.world.journal.entries(since=last))
    assert sent == ["getRoomStateWithKey", "listAgents", "login", "login", "setDisplayName", "setRoomState"]
    user = f"@{agent_localpart(first.id)}:matrix.test"
    assert {u["user_id"]: u["displayname"] for u in matrix_mock.snapshot()["users"]}[user] == "Renamed One ✓"


async def test_a_long_name_is_cut_to_what_a_display_name_may_hold(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agent("n" * 300)
    assert (await bridge_sync()).ok
    converged(matrix_mock, fuzz_context)


async def test_removal_keeps_user_and_room_and_reappearance_reactivates(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    _, gone = letta_mock.add_agents(2)
    await bridge_sync()
    rooms_before = rooms_of(matrix_mock)
    letta_mock.remove_agent(gone.id)
    report = await bridge_sync()
    assert report.removed == 1
    entry = mapping(data_dir)["agents"][gone.id]
    assert entry["status"] == "removed"
    assert entry["removed_at"]
    assert rooms_of(matrix_mock).keys() == rooms_before.keys()  # nothing deleted
    assert (await bridge_sync()).removed == 0  # already marked
    # It comes back (same id): reactivated, nothing created.
    letta_mock.add_agent(gone.name, agent_id=gone.id)
    last = matrix_mock.world.journal.last_seq
    report = await bridge_sync()
    assert (report.reactivated, report.users_created, report.rooms_created) == (1, 0, 0)
    assert mapping(data_dir)["agents"][gone.id]["status"] == "active"
    assert mapping(data_dir)["agents"][gone.id]["removed_at"] is None
    assert not [e for e in matrix_mock.world.journal.entries(since=last) if e.operation in CREATIONS]
    converged(matrix_mock, fuzz_context)


async def test_the_admin_and_the_bot_get_power_level_100_where_the_bridge_makes_rooms(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, data_dir: Path
) -> None:
    (agent,) = letta_mock.add_agents(1)
    assert (await bridge_sync()).ok
    rooms = matrix_mock.world.matrix.rooms
    saved = mapping(data_dir)
    space, room = rooms[saved["space_id"]], rooms[saved["agents"][agent.id]["room_id"]]
    # Room version 12: the creator (the admin, the agent's user) outranks every level and is not listed.
    assert (space.version, space.creator) == ("12", ADMIN)
    assert space.content("m.room.power_levels")["users"] == {BOT: 100}
    assert room.creator == f"@{agent_localpart(agent.id)}:matrix.test"
    assert room.content("m.room.power_levels")["users"] == {ADMIN: 100, BOT: 100}


async def test_a_space_link_without_via_does_not_count(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    """The spec ignores an m.space.child or m.space.parent without servers to join through."""
    (agent,) = letta_mock.add_agents(1)
    assert (await bridge_sync()).ok
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


async def test_mapping_file_is_private_from_its_first_byte(
    letta_mock: LettaMock, bridge_sync: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(1)
    await bridge_sync()
    assert mode(data_dir / MAPPING_FILE) == 0o600
    assert mode(data_dir) == 0o700


async def test_an_existing_agent_user_with_another_password_is_a_clear_conflict(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run
) -> None:
    taken, _ = letta_mock.add_agents(2)
    user_id = matrix_mock.add_user(agent_localpart(taken.id), "someone-elses-password")
    report = await bridge_sync()
    [failure] = report.failed
    assert (failure.agent_id, failure.error) == (taken.id, "AgentUserConflict")
    assert user_id in failure.reason
    assert "password" in failure.reason
    assert report.users_created == 1  # the other agent went ahead


async def test_an_existing_agent_user_with_our_password_is_adopted(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    bridge_sync: Run,
    data_dir: Path,
    fuzz_context: FuzzContext,
) -> None:
    """A run registered the user, then died before recording it; the password was saved first."""
    (agent,) = letta_mock.add_agents(1)
    matrix_mock.inject("createRoom", status=403, after=1)  # stop this agent right after registering
    await bridge_sync()
    path = data_dir / MAPPING_FILE
    saved = json.loads(path.read_text())
    saved["agents"][agent.id].update(registered=False, access_token=None)
    path.write_text(json.dumps(saved))
    report = await bridge_sync()
    assert (report.ok, report.users_created, report.rooms_created) == (True, 0, 1)
    assert matrix_mock.calls("register") == 3  # two from the first run, one M_USER_IN_USE
    converged(matrix_mock, fuzz_context)


async def test_a_missing_bot_is_created_with_the_admin_api(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(1)
    report = await bridge_sync(bot_user="newbot", bot_password="newbot-password")
    assert report.ok
    assert matrix_mock.calls("adminPutUser") == 1
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context, bot="@newbot:matrix.test") == []
    assert (await bridge_sync(bot_user="newbot", bot_password="newbot-password")).ok
    assert matrix_mock.calls("adminPutUser") == 1


async def test_a_bot_with_another_password_is_never_overwritten(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run
) -> None:
    with pytest.raises(ConfigurationError, match=r"@letta:matrix\.test exists but refuses"):
        await bridge_sync(bot_password="wrong")
    assert matrix_mock.calls("adminPutUser") == 0


async def test_a_wrong_admin_password_names_the_admin(bridge_sync: Run) -> None:
    with pytest.raises(ConfigurationError, match="admin user admin cannot log in"):
        await bridge_sync(admin_password="wrong")


async def test_a_wrong_letta_token_is_a_configuration_error(bridge_sync: Run) -> None:
    with pytest.raises(ConfigurationError, match="refused the token"):
        await bridge_sync(letta_token="wrong")


async def test_listing_failure_aborts_before_anything_is_marked_removed(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(2)
    await bridge_sync()
    letta_mock.inject("listAgents", status=422, times=0)
    with pytest.raises(ApiError) as raised:
        await bridge_sync()
    assert raised.value.status == 422
    assert all(entry["status"] == "active" for entry in mapping(data_dir)["agents"].values())


async def test_an_incomplete_listing_marks_nothing_removed(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run, data_dir: Path
) -> None:
    letta_mock.add_agents(5)
    await bridge_sync(page_limit=2)
    report = await bridge_sync(page_limit=2, max_pages=1)
    assert (report.listing_complete, report.agents_seen, report.removed) == (False, 2, 0)
    assert not report.ok  # agents it missed are not in sync: the CLI exits 1
    assert all(entry["status"] == "active" for entry in mapping(data_dir)["agents"].values())


async def test_a_server_name_the_homeserver_does_not_have_stops_the_run(
    letta_mock: LettaMock, matrix_mock: MatrixMock, bridge_sync: Run
) -> None:
    """Every user id the bridge makes ends in the server name: with the wrong one, the mapping would record
    users that the homeserver never made (it names them after itself)."""
    letta_mock.add_agents(1)
    with pytest.raises(ConfigurationError, match=r"its server name is 'matrix\.test', not 'wrong\.test'"):
        await bridge_sync(server_name="wrong.test")
    assert matrix_mock.calls("register") == 0
