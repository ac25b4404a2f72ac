"""Each agent's private room: created by the agent's user, named after the agent, joined by the admin and
the bot."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from letta_matrix_reference.bridge.errors import ApiError
from letta_matrix_reference.bridge.letta import Agent
from letta_matrix_reference.bridge.matrix import MatrixClient
from letta_matrix_reference.bridge.store import AgentRecord, Persister
from letta_matrix_reference.bridge.users import ClientSource

log = logging.getLogger(__name__)

# In the room's m.room.create content: which agent the room is for. If the bridge stops between creating
# the room and saving its id, the next run finds the room by this instead of making a second one.
ROOM_MARKER = "io.letta.agent_id"


async def marked_rooms(client: MatrixClient, marks: Mapping[str, str]) -> list[str]:
    """The rooms `client` has joined whose m.room.create content holds all of `marks`, oldest first.

    Any error is raised, never skipped: a room that could not be checked might be the one looked for, and
    the caller would make it a second time."""
    found: list[tuple[int, str]] = []
    for room_id in await client.joined_rooms():
        create = await client.get_state(room_id, "m.room.create", whole=True)
        content = create.get("content")
        if isinstance(content, dict) and all(content.get(key) == value for key, value in marks.items()):
            made = create.get("origin_server_ts")
            found.append((made if isinstance(made, int) else 0, room_id))
    return [room_id for _, room_id in sorted(found)]


async def find_one(
    client: MatrixClient, marks: Mapping[str, str], what: str, *, ignore: str | None = None
) -> str | None:
    """The oldest room carrying `marks` (but `ignore`). More than one means a creation was repeated (a
    server that took longer than the bridge waited): the others are left alone, since they may hold
    messages already."""
    found = [room_id for room_id in await marked_rooms(client, marks) if room_id != ignore]
    if len(found) > 1:
        log.warning(
            "found %d rooms marked as %s (%s); keeping the oldest, %s, and leaving the others alone",
            len(found), what, ", ".join(found), found[0],
        )  # fmt: skip
    return found[0] if found else None


async def join_or_get_invited(member: MatrixClient, room_id: str, inviter: ClientSource) -> None:
    """Join `room_id`; if the room says "not invited" (the member changed since the room was made), have
    the inviter invite them first."""
    try:
        await member.join(room_id)
    except ApiError as exc:
        if exc.status != 403:
            raise
        await (await inviter()).invite(room_id, member.user_id)
        await member.join(room_id)


class RoomManager:
    def __init__(self, server_name: str, persister: Persister) -> None:
        self.server_name = server_name
        self.persister = persister

    async def ensure_room(
        self,
        record: AgentRecord,
        agent: Agent,
        client: MatrixClient,
        members: Sequence[str],
        space_id: str,
        *,
        may_exist: bool,
    ) -> bool:
        """Give the agent a room unless it has one; whether one was created. `may_exist`: the agent's user
        is older than this run, so it may have made the room in a run that did not get to record it."""
        if record.room_id is not None:
            return False
        marks = {ROOM_MARKER: record.agent_id}
        what = f"the room of agent {record.agent_id}"
        body = {
            "name": agent.name,
            "preset": "private_chat",
            "invite": [member for member in members if member != client.user_id],
            "creation_content": marks,
            # The parent link is part of the room from the start: one request fewer per agent.
            "initial_state": [
                {
                    "type": "m.space.parent",
                    "state_key": space_id,
                    "content": {"via": [self.server_name], "canonical": True},
                }
            ],
        }
        room = await client.create_room(
            body, operators=members, find_existing=lambda: find_one(client, marks, what), look_first=may_exist
        )
        if room.made:
            record.room_id, record.room_name, record.space_parent = room.room_id, agent.name, space_id
            record.space_child, record.joined = None, ()
            log.info("created the room %s for agent %s", room.room_id, record.agent_id)
        else:
            log.info("found the room %s of agent %s, made by an earlier attempt", room.room_id, agent.id)
            self._found(record, room.room_id)
        # A room made but not recorded would be made again next time: save before going on.
        await self.persister.commit()
        return room.made

    @staticmethod
    def _found(record: AgentRecord, room_id: str) -> None:
        """Take a room found by its marker: what was done to it is unknown (its creation may have stopped
        halfway), so every later step checks again, and all of them are idempotent."""
        record.room_id, record.room_name, record.space_parent = room_id, None, None
        record.space_child, record.joined = None, ()

    @staticmethod
    async def ensure_name(record: AgentRecord, agent: Agent, client: ClientSource) -> bool:
        """Name the room after the agent; whether an earlier name was replaced."""
        assert record.room_id is not None
        if record.room_name == agent.name:
            return False
        await (await client()).put_state(record.room_id, "m.room.name", "", {"name": agent.name})
        renamed = record.room_name is not None
        record.room_name = agent.name
        return renamed

    @staticmethod
    async def ensure_members(
        record: AgentRecord, members: Sequence[MatrixClient], agent: ClientSource
    ) -> None:
        """The admin and the bot join the room (invited when it was made, or by the agent user now)."""
        assert record.room_id is not None
        for member in members:
            if member.user_id not in record.joined:
                await join_or_get_invited(member, record.room_id, agent)
                record.joined = (*record.joined, member.user_id)
