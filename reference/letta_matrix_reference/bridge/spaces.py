"""The "Letta Agents" space: made once by the admin, joined by the bot, and home to every agent's room."""

from __future__ import annotations

import logging

from letta_matrix_reference.bridge.errors import ApiError
from letta_matrix_reference.bridge.matrix import MatrixClient
from letta_matrix_reference.bridge.rooms import find_one, join_or_get_invited
from letta_matrix_reference.bridge.store import AgentRecord, BridgeState, Persister
from letta_matrix_reference.bridge.users import ClientSource, ready

log = logging.getLogger(__name__)

# In the space's m.room.create content: which bridge made it, to find it again if its id was lost.
SPACE_MARKER = "io.letta.bridge_id"


class SpaceManager:
    def __init__(self, server_name: str, space_name: str, state: BridgeState, persister: Persister) -> None:
        self.server_name = server_name
        self.space_name = space_name
        self.state = state
        self.persister = persister

    async def ensure_space(self, admin: MatrixClient, bot: MatrixClient) -> str:
        """The space's id: the recorded one if the admin is still in it, else the one this bridge made
        that the admin is in, else a new one (the rooms are then linked to it again by `link`, since their
        records name the old space)."""
        state = self.state
        left = None
        if state.space_id is not None and not await self._admin_joined(admin, state.space_id):
            log.warning(
                "the admin is not in the space %s; looking for another, or making one", state.space_id
            )
            left, state.space_id = state.space_id, None
        if state.space_id is None:
            # The space's marker is this bridge's id: on disk before any space carries it, or a run that
            # died before saving the space would leave one the next run (with a new id) cannot recognise.
            await self.persister.commit()
            state.space_id = await self._find_or_make(admin, bot, left)
            state.space_joined = ()
            await self.persister.commit()
        space_id = state.space_id
        if bot.user_id not in state.space_joined and bot.user_id != admin.user_id:
            await join_or_get_invited(bot, space_id, ready(admin))
            state.space_joined = (*state.space_joined, bot.user_id)
        return space_id

    async def _find_or_make(self, admin: MatrixClient, bot: MatrixClient, left: str | None) -> str:
        """The space this bridge made and the admin is in (a run that died before saving its id leaves
        one), never `left` (the admin's own membership there said no); else a new one."""
        marks = {"type": "m.space", SPACE_MARKER: self.state.bridge_id}

        async def find() -> str | None:
            return await find_one(admin, marks, "this bridge's space", ignore=left)

        others = [bot.user_id] if bot.user_id != admin.user_id else []
        body = {
            "name": self.space_name,
            "preset": "private_chat",
            "creation_content": marks,
            "invite": others,
        }
        space = await admin.create_room(body, operators=others, find_existing=find, look_first=True)
        log.info("%s the space %r: %s", "created" if space.made else "found", self.space_name, space.room_id)
        return space.room_id

    @staticmethod
    async def _admin_joined(admin: MatrixClient, space_id: str) -> bool:
        """Whether the admin is still in the space, by its own membership. (Reading any other state proves
        nothing: a user who left still reads the state as it was when they left.)"""
        try:
            member = await admin.get_state(space_id, "m.room.member", admin.user_id)
        except ApiError as exc:
            # 403: the admin never was in it (or was banned, or the server forgot the room); 404: it has no
            # membership there at all. But 404 M_UNRECOGNIZED is about the endpoint, not the space.
            if exc.status == 403 or (exc.status == 404 and exc.errcode != "M_UNRECOGNIZED"):
                return False
            raise
        return member.get("membership") == "join"

    async def link(
        self, record: AgentRecord, space_id: str, admin: MatrixClient, agent: ClientSource
    ) -> None:
        """Make the agent's room a child of the space (the admin, in the space) and the space the room's
        canonical parent (the agent user, who created the room and so is joined with the power to)."""
        assert record.room_id is not None
        via = [self.server_name]
        if record.space_child != space_id:
            await admin.put_state(space_id, "m.space.child", record.room_id, {"via": via})
            record.space_child = space_id
        if record.space_parent != space_id:
            client = await agent()
            if record.space_parent is not None:
                # The room still names a space that is gone: empty content removes that parent. Until the new
                # one is put, what the room names is unknown: a run that dies in between must not believe
                # the removed parent is still there (found by the relay fuzzer: a room with no parent).
                gone, record.space_parent = record.space_parent, None
                await self.persister.commit()
                await client.put_state(record.room_id, "m.space.parent", gone, {})
            else:
                # A room found by its marker was made by a run that died before saving it, with the space
                # of that run, which may since have been replaced (found by the relay fuzzer: two parents).
                for event in await client.get_room_state(record.room_id):
                    stale = event.get("state_key")
                    if event.get("type") == "m.space.parent" and event.get("content") and stale != space_id:
                        await client.put_state(record.room_id, "m.space.parent", str(stale), {})
            await client.put_state(
                record.room_id, "m.space.parent", space_id, {"via": via, "canonical": True}
            )
            record.space_parent = space_id
