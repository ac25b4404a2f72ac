"""People in a bridge's rooms, for fuzz plans and tests: they are let into an agent's room and talk there,
acting on the mock world directly (no HTTP, so nothing of theirs is in the journal the invariants judge).

An agent room is a room that is not a space and was made by someone other than the world's starting
accounts (a bridge makes each agent's room as that agent's user)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from mockgen.world import World

PERSON_PASSWORD = "person-password"


def agent_rooms(snapshot: dict[str, Any], core_users: Collection[str]) -> list[dict[str, Any]]:
    """The agent rooms of a world snapshot, oldest first."""
    return [room for room in snapshot["rooms"] if not room["is_space"] and room["creator"] not in core_users]


def let_in(world: World, room: dict[str, Any], localpart: str) -> str:
    """`localpart` (made if missing) invited by the room's creator and joined; its user id."""
    matrix = world.matrix
    user_id = matrix.user_id_for(localpart)
    if user_id not in {user["user_id"] for user in matrix.snapshot()["users"]}:
        matrix.add_user(localpart, PERSON_PASSWORD)
    if room["members"].get(user_id) != "join":
        matrix.invite(matrix.user_by_name(room["creator"]), room["room_id"], user_id)
        matrix.join(matrix.user_by_name(user_id), room["room_id"])
    return user_id


def say(world: World, room_id: str, sender: str, body: str, *, msgtype: str = "m.text") -> str:
    """`sender` (a member) sends a message; its event id."""
    return world.matrix.act_send(sender, room_id, {"msgtype": msgtype, "body": body}, "m.room.message")
