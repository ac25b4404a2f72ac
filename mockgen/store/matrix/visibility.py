"""History visibility: which of a room's events a user may see, as Synapse's `filter_events_for_client`
decides it for /sync and /messages. Probed on Synapse 1.163.2 for issue 13 (a room set to `joined`, `invited`,
`world_readable` and `shared` by a state event, read by a user before, while and after being invited, joined
and gone; corpus steps `visibility: ...`).

Per event: the visibility in force before it (`shared` without an m.room.history_visibility event) and the
user's membership before it. An m.room.history_visibility event takes the more permissive of its old and new
value, so each boundary is seen; the user's own member event takes the more joined of their old and new
membership, and their own leave after a join or an invite is always seen. A member at the time sees the event;
otherwise `joined` hides it, `invited` shows it to an invitee, `shared` shows it unless the user is only
peeking (a world-readable room they are not in), `world_readable` shows it."""

from __future__ import annotations

from mockgen.store.matrix.model import Event, Room

HISTORY_VISIBILITY = "m.room.history_visibility"
WORLD_READABLE = "world_readable"
# Most permissive first (Synapse's VISIBILITY_PRIORITY); most joined first (its MEMBERSHIP_PRIORITY).
_VISIBILITY_ORDER = (WORLD_READABLE, "shared", "invited", "joined")
_MEMBERSHIP_ORDER = ("join", "invite", "knock", "leave", "ban")


def _known(value: object, order: tuple[str, ...], default: str) -> str:
    return value if isinstance(value, str) and value in order else default


def _most(first: str, second: str, order: tuple[str, ...]) -> str:
    return first if order.index(first) <= order.index(second) else second


def visible(room: Room, user_id: str, *, peeking: bool = False) -> dict[str, bool]:
    """Every event of the room by id: whether `user_id` may see it."""
    visibility = "shared"
    membership = "leave"
    seen: dict[str, bool] = {}
    for event in room.timeline:
        seen[event.event_id] = _allowed(event, user_id, visibility, membership, peeking)
        if event.type == HISTORY_VISIBILITY and event.state_key == "":
            visibility = _known(event.content.get("history_visibility"), _VISIBILITY_ORDER, "shared")
        elif event.type == "m.room.member" and event.state_key == user_id:
            membership = _known(event.content.get("membership"), _MEMBERSHIP_ORDER, "leave")
    return seen


def _allowed(event: Event, user_id: str, visibility: str, membership: str, peeking: bool) -> bool:
    if event.type == HISTORY_VISIBILITY and event.state_key == "":
        new = _known(event.content.get("history_visibility"), _VISIBILITY_ORDER, "shared")
        visibility = _most(visibility, new, _VISIBILITY_ORDER)
    if event.type == "m.room.member" and event.state_key == user_id:
        new = _known(event.content.get("membership"), _MEMBERSHIP_ORDER, "leave")
        if new == "leave" and membership in ("join", "invite"):
            return True
        membership = _most(new, membership, _MEMBERSHIP_ORDER)
    if membership == "join":
        return True
    if visibility == "joined":
        return False
    if visibility == "invited":
        return membership == "invite"
    return not (visibility == "shared" and peeking)


def world_readable(room: Room) -> bool:
    return room.content(HISTORY_VISIBILITY).get("history_visibility") == WORLD_READABLE
