"""The bridge as a test target: one sync against the mock services, configured from the `FuzzContext` the
fuzz runner (or a test) hands it, and an oracle that says whether a mock world is in the state the bridge
promises.

A fuzz runner calls `fuzz_sync(context)` after arranging the world and faults; the mapping file lives in
`context.workdir`, so calling it again with the same context is the bridge's next run. Then
`convergence_problems(world.snapshot(), context)` lists what is not as it should be."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.harness.fuzz.target import FuzzContext, fuzz_target
from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.errors import BridgeError
from letta_matrix_reference.bridge.http import Sleep
from letta_matrix_reference.bridge.relay import Checkpoint, Relay, no_checkpoint
from letta_matrix_reference.bridge.store import MAPPING_FILE, MappingFile
from letta_matrix_reference.bridge.sync import Bridge, SyncReport
from letta_matrix_reference.bridge.users import agent_localpart, display_name_as_stored


async def no_wait(seconds: float) -> None:
    """Retries against a mock need not wait: its faults do not heal with time."""


def mock_config(context: FuzzContext, **settings: object) -> BridgeConfig:
    """A config for the context's servers and accounts (the admin as the bridge's admin, the bot as its
    bot), the mapping in its workdir; `settings` override any field (e.g. `concurrency`)."""
    values: dict[str, object] = {
        "letta_url": context.letta_url,
        "letta_token": context.letta_token,
        "matrix_url": context.matrix_url,
        "server_name": context.server_name,
        "admin_user": context.admin.username,
        "admin_password": context.admin.password,
        "bot_user": context.bot.username,
        "bot_password": context.bot.password,
        "data_dir": context.workdir,
        "request_timeout": 10.0,
    }
    values.update(settings)
    return BridgeConfig.from_sources(values, env={})


async def sync_against(context: FuzzContext, *, sleep: Sleep = no_wait, **settings: object) -> SyncReport:
    """One full sync (a fresh `Bridge`, as one `python -m letta_matrix_reference.bridge sync --once` run
    would make)."""
    async with Bridge(mock_config(context, **settings), sleep=sleep) as bridge:
        return await bridge.sync_once()


async def relay_against(
    context: FuzzContext,
    *,
    sleep: Sleep = no_wait,
    checkpoint: Checkpoint = no_checkpoint,
    stop: asyncio.Event | None = None,
    forever: bool = False,
    relay_class: type[Relay] = Relay,
    **settings: object,
) -> int:
    """One bridge process that provisions and then relays (as `python -m letta_matrix_reference.bridge
    relay` would), until a sync brings nothing to answer (or, `forever`, until `stop`); how many turns it
    asked Letta for."""
    async with Bridge(mock_config(context, **settings), sleep=sleep) as bridge:
        await bridge.sync_once()
        relay = relay_class(bridge, sleep=sleep, checkpoint=checkpoint, poll_ms=2000)
        await relay.run(stop, forever=forever)
        return relay.turns


def convergence_problems(
    snapshot: Mapping[str, Any],
    context: FuzzContext,
    *,
    bot: str | None = None,
    space_name: str = "Letta Agents",
    space_id: str | None = None,
) -> list[str]:
    """What in a mock world's `snapshot()` breaks the bridge's promise (empty when converged): every Letta
    agent has exactly one user (from its id, named after it) and exactly one room (made by that user, named
    after the agent, joined by the admin and the bot), listed in the space (child and parent): the one named
    `space_name`, or `space_id` if given (e.g. the mapping's, when an older space was left behind).

    The admin and the bot are the context's (`bot`, a user id, when the bridge ran with another).

    A link counts only as the snapshot counts it: an m.space.child or m.space.parent with a non-empty `via`
    list of server names (the spec ignores one without), so a link the bridge wrote without `via` fails."""
    server = str(snapshot["server_name"])
    admin = context.user_id(context.admin)
    bot = bot or context.user_id(context.bot)
    users = {user["user_id"]: user for user in snapshot["users"]}
    rooms = snapshot["rooms"]
    problems: list[str] = []
    spaces = [
        room
        for room in rooms
        if room["is_space"] and room["name"] == space_name and space_id in (None, room["room_id"])
    ]
    if len(spaces) != 1:
        return [f"expected one space named {space_name!r} (id {space_id or 'any'}), found {len(spaces)}"]
    space = spaces[0]
    if space["members"].get(bot) != "join":
        problems.append(f"the bot {bot} has not joined the space")
    for agent in snapshot["agents"]:
        user_id = f"@{agent_localpart(agent['id'])}:{server}"
        user = users.get(user_id)
        if user is None:
            problems.append(f"agent {agent['id']} has no user {user_id}")
            continue
        if user["displayname"] != display_name_as_stored(agent["name"]):
            problems.append(f"{user_id} is named {user['displayname']!r}, not {agent['name']!r}")
        own = [room for room in rooms if room["creator"] == user_id and not room["is_space"]]
        if len(own) != 1:
            problems.append(f"agent {agent['id']} has {len(own)} rooms, not one")
            continue
        room = own[0]
        if room["name"] != agent["name"]:
            problems.append(f"room {room['room_id']} is named {room['name']!r}, not {agent['name']!r}")
        for member in (admin, bot):
            if room["members"].get(member) != "join":
                problems.append(f"{member} has not joined room {room['room_id']} of agent {agent['id']}")
        if room["room_id"] not in space["children"]:
            problems.append(f"room {room['room_id']} is not a child of the space")
        if room["parents"] != [space["room_id"]]:
            problems.append(f"room {room['room_id']} has parents {room['parents']}, not the space")
    return problems


# For a fuzz runner: what `sync_against` may raise when faults make success impossible (anything else
# escaping it is a bug), its persisted state, and what is still wrong after a run without faults.
EXPECTED_EXCEPTIONS: tuple[type[BaseException], ...] = (BridgeError,)


def load_state(workdir: Path) -> dict[str, Any]:
    """The mapping in `workdir` as {agent id: entry} (empty before the first run)."""
    state = MappingFile(Path(workdir) / MAPPING_FILE).load()
    return {agent_id: record.to_json() for agent_id, record in state.agents.items()}


def check_converged(snapshot: Mapping[str, Any], context: FuzzContext) -> list[str]:
    """`convergence_problems` for the space the mapping names, and whether the mapping agrees with the
    world: every agent active, registered, with the room that is in the world."""
    state = MappingFile(context.workdir / MAPPING_FILE).load()
    problems = convergence_problems(snapshot, context, space_id=state.space_id)
    server = str(snapshot["server_name"])
    rooms_by_creator = {
        room["creator"]: room["room_id"] for room in snapshot["rooms"] if not room["is_space"]
    }
    for agent in snapshot["agents"]:
        record = state.agents.get(agent["id"])
        if record is None:
            problems.append(f"the mapping has no entry for agent {agent['id']}")
            continue
        if record.status != "active" or not record.registered:
            problems.append(
                f"the mapping has agent {agent['id']} {record.status}, registered={record.registered}"
            )
        if record.room_id != rooms_by_creator.get(f"@{agent_localpart(agent['id'])}:{server}"):
            problems.append(f"the mapping has room {record.room_id} for agent {agent['id']}")
    return problems


@fuzz_target(expected_exceptions=EXPECTED_EXCEPTIONS, load_state=load_state, check_converged=check_converged)
async def fuzz_sync(context: FuzzContext) -> None:
    """The default target of `contracts fuzz`: one bridge run, the mapping kept in the context's workdir."""
    await sync_against(context)


@fuzz_target(
    expected_exceptions=EXPECTED_EXCEPTIONS,
    load_state=load_state,
    check_converged=check_converged,
    relays=True,
)
async def fuzz_relay(context: FuzzContext) -> None:
    """The relay as a fuzz target: provision, then relay every person's message the plan's people sent
    (the relay invariants judge the rooms)."""
    await relay_against(context)
