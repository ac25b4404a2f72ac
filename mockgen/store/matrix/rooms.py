"""Rooms: creation, membership, state and message events, transaction ids, aliases and space links.

Not locked on its own: `MatrixStore` holds its lock around every call. Every event enters a room through
`Rooms._append`."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mockgen.store.errors import MatrixError
from mockgen.store.matrix import rules
from mockgen.store.matrix.errcodes import (
    M_FORBIDDEN,
    M_INVALID_PARAM,
    M_NOT_FOUND,
    M_ROOM_IN_USE,
    M_UNKNOWN,
    M_UNSUPPORTED_ROOM_VERSION,
)
from mockgen.store.matrix.ids import Ids
from mockgen.store.matrix.model import Event, Room, StateKey, TxnKey, User


class Rooms:
    """The homeserver's rooms. `users` is the account directory, read for the displayname a member event
    carries."""

    def __init__(self, ids: Ids, users: Mapping[str, User]) -> None:
        self._ids = ids
        self._users = users
        self.rooms: dict[str, Room] = {}
        self.aliases: dict[str, str] = {}
        # user id -> the rooms they have joined (in join order): joined_rooms and profile changes would
        # otherwise walk every room. `_append` keeps it equal to the member events that say "join".
        self._joined: dict[str, dict[str, None]] = {}
        # user id -> every room they have a member event in, whatever its membership: what their /sync reads
        # (a sync walks its user's rooms, never the homeserver's, like Synapse's room membership queries).
        self._member_of: dict[str, dict[str, None]] = {}
        self._created: dict[str, int] = {}  # room id -> its place in creation order
        self._txns: dict[TxnKey, str] = {}

    # -- events

    def _append(
        self,
        room: Room,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        event_id: str | None = None,
    ) -> Event:
        """Mint the event and add it to the room's timeline and, for a state event, its current state. The
        one place events are created, and where each takes its stream position for /sync."""
        current = room.state.get((event_type, state_key)) if state_key is not None else None
        event = Event(
            event_id=self._ids.event_id() if event_id is None else event_id,
            room_id=room.room_id,
            sender=sender,
            type=event_type,
            content=copy.deepcopy(content),
            origin_server_ts=self._ids.now_ms(),
            state_key=state_key,
            replaces_state=current.event_id if current else None,
        )
        room.positions[event.event_id] = len(room.timeline)
        room.timeline.append(event)
        if state_key is not None:
            room.state[(event_type, state_key)] = event
            if event_type == "m.room.member":
                self._member_of.setdefault(state_key, {})[room.room_id] = None
                joined = self._joined.setdefault(state_key, {})
                if content.get("membership") == "join":
                    joined[room.room_id] = None
                else:
                    joined.pop(room.room_id, None)
        # Whose syncs may have news from it, as Synapse's notifier wakes them: the room's joined members, and
        # the user a member event is about (an invitee, one who left, was kicked or banned).
        audience = room.joined_members()
        if event_type == "m.room.member" and state_key is not None:
            audience.add(state_key)
        event.stream = self._ids.next_stream(audience)
        return event

    def _send_state(
        self, room: Room, sender: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        duplicate = room.duplicate_state(sender, event_type, state_key, content)
        if duplicate is not None:
            return duplicate
        rules.check_size(event_type, state_key, content, room.room_id, sender)
        return self._append(room, sender, event_type, content, state_key).event_id

    def _room_for_member(self, requester: User, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None or room.membership(requester.user_id) != "join":
            raise MatrixError(403, M_FORBIDDEN, f"User {requester.user_id} not in room {room_id}")
        return room

    def _readable_state(self, requester: User, room_id: str) -> dict[StateKey, Event]:
        """The state `requester` may read: the current state for a member, the state right after their
        leave for one who left (the spec's rule; Synapse's too, for any "leave", a kick or a refused invite
        included), nothing for anyone else."""
        room = self.rooms.get(room_id)
        membership = room.membership(requester.user_id) if room is not None else None
        if room is not None and membership == "join":
            return room.state
        if room is not None and membership == "leave":
            return room.state_after(room.state[("m.room.member", requester.user_id)].event_id)
        raise MatrixError(
            403,
            M_FORBIDDEN,
            f"User {requester.user_id} not in room {room_id}, and room previews are disabled",
        )

    # -- room creation

    def _member_content(self, user_id: str, membership: str, **extra: Any) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        user = self._users.get(user_id)
        if user is not None and user.displayname is not None:
            content["displayname"] = user.displayname
        content.update(extra)
        return content

    def _check_alias(self, alias_localpart: str) -> str:
        rules.check_alias_localpart(alias_localpart)
        alias = f"#{alias_localpart}:{self._ids.server_name}"
        if alias in self.aliases:
            raise MatrixError(400, M_ROOM_IN_USE, "Room alias already taken")
        rules.check_alias_length(alias)
        return alias

    def _add_create_event(self, room: Room, creation_content: dict[str, Any]) -> None:
        content = dict(creation_content)
        content["room_version"] = room.version
        if room.version not in ("11", "12"):
            content.setdefault("creator", room.creator)
        if room.additional_creators:
            content["additional_creators"] = list(room.additional_creators)
        rules.check_size("m.room.create", "", content, room.room_id, room.creator)
        # Room version 12 derives the room id from the create event: they share their hash.
        event_id = ("$" + room.room_id[1:]) if room.version == "12" else None
        self._append(room, room.creator, "m.room.create", content, "", event_id=event_id)

    def create_room(self, requester: User, body: dict[str, Any]) -> str:
        """POST /createRoom: Synapse's checks, then the events it sends, in its order. What Synapse checks
        only as it sends an event (power levels, `initial_state` content, `name` and `topic`, each invitee)
        fails after the room exists, with the creator joined, as on Synapse: the room is left behind."""
        version = str(body.get("room_version", rules.DEFAULT_ROOM_VERSION))
        if version not in rules.SUPPORTED_ROOM_VERSIONS:
            raise MatrixError(
                400, M_UNSUPPORTED_ROOM_VERSION, "Your homeserver does not support this room version"
            )
        rules.check_preset(body.get("preset"))
        rules.check_initial_state(body.get("initial_state", []))
        rules.check_canonical_json(
            version,
            body.get("creation_content"),
            body.get("power_level_content_override"),
            [entry.get("content") for entry in body.get("initial_state", [])],
        )
        # Synapse tests for the key: `room_alias_name: ""` makes the alias `#:server`.
        alias = self._check_alias(str(body["room_alias_name"])) if "room_alias_name" in body else None
        invites = rules.validate_user_ids(body.get("invite", []))
        # Synapse only checks `visibility == "private"`: anything else picks the public preset.
        private = body.get("visibility", "private") == "private"
        preset = rules.PRESETS[body.get("preset") or ("private_chat" if private else "public_chat")]
        creator = requester.user_id
        initial_state = {
            (str(entry["type"]), str(entry.get("state_key", ""))): dict(entry["content"])
            for entry in body.get("initial_state", [])
        }
        if any(event_type == "m.room.create" for event_type, _ in initial_state):
            # Synapse sends initial_state after the create event, and event auth refuses a create event
            # with prev_events (auth rule 1.1). Synapse has persisted the room's first events by then (and
            # answers 500); here nothing is created.
            raise MatrixError(403, M_FORBIDDEN, "Create event has prev events")
        room = Room(
            room_id=self._ids.room_id(version),
            version=version,
            creator=creator,
            additional_creators=(
                tuple(dict.fromkeys(invites)) if version == "12" and preset.invitees_ops else ()
            ),
        )
        self._add_create_event(room, body.get("creation_content") or {})
        self._created[room.room_id] = len(self._created)
        self.rooms[room.room_id] = room
        self._send_state(room, creator, "m.room.member", creator, self._member_content(creator, "join"))
        levels = rules.initial_power_levels(
            version, creator, preset, invites, body.get("power_level_content_override")
        )
        defaults: list[tuple[str, dict[str, Any]]] = [("m.room.power_levels", levels)]
        if alias is not None:
            self.aliases[alias] = room.room_id
            defaults.append(("m.room.canonical_alias", {"alias": alias}))
        defaults.append(("m.room.join_rules", {"join_rule": preset.join_rule}))
        defaults.append(("m.room.history_visibility", {"history_visibility": "shared"}))
        if preset.guest_access:
            defaults.append(("m.room.guest_access", {"guest_access": preset.guest_access}))
        for event_type, content in defaults:
            # An initial_state entry replaces the default event of its type, at its own place.
            if (event_type, "") not in initial_state:
                self._send_state(room, creator, event_type, "", content)
        for (event_type, state_key), content in initial_state.items():
            rules.check_content(event_type, content)
            self._send_state(room, creator, event_type, state_key, content)
        if "name" in body:
            rules.check_content("m.room.name", {"name": body["name"]})
            self._send_state(room, creator, "m.room.name", "", {"name": body["name"]})
        if "topic" in body:
            rules.check_content("m.room.topic", {"topic": body["topic"]})
            topic = {"topic": body["topic"], "m.topic": {"m.text": [{"body": body["topic"]}]}}
            self._send_state(room, creator, "m.room.topic", "", topic)
        for invitee in invites:
            # Each invite is a membership change of its own, in the list's order: the creator is already in
            # the room, and a remote invitee needs federation (which the mock, like a homeserver with
            # federation off, does not have).
            if room.membership(invitee) == "join":
                raise MatrixError(403, M_FORBIDDEN, f"{invitee} is already in the room.")
            self._check_local(invitee)
            extra = {"is_direct": True} if body.get("is_direct") else {}
            invite = self._member_content(invitee, "invite", **extra)
            self._send_state(room, creator, "m.room.member", invitee, invite)
        return room.room_id

    def _check_local(self, user_id: str) -> None:
        """An invite to a user on another server goes over federation, which this homeserver does not have:
        Synapse with federation off answers 403 for the invitee's server."""
        server = rules.server_of(user_id)
        if server != self._ids.server_name:
            raise MatrixError(403, M_FORBIDDEN, f"Federation denied with {server}.")

    def resolve_room(self, room_id_or_alias: str, via: Sequence[str] = ()) -> str:
        """/join/{roomIdOrAlias}: the room id an alias names. A remote alias, or an unknown room id with a
        remote server to join through, needs federation: Synapse with federation off answers 502."""
        if not rules.is_room_id_or_alias(room_id_or_alias):
            raise MatrixError(400, M_UNKNOWN, f"{room_id_or_alias} was not legal room ID or room alias")
        if room_id_or_alias.startswith("#"):
            room_id = self.aliases.get(room_id_or_alias)
            if room_id is None and room_id_or_alias.partition(":")[2] != self._ids.server_name:
                raise MatrixError(502, M_UNKNOWN, "Failed to fetch alias")
            if room_id is None:
                raise MatrixError(404, M_NOT_FOUND, f"Room alias {room_id_or_alias} not found")
            return room_id
        remote = [server for server in via if server != self._ids.server_name]
        if room_id_or_alias not in self.rooms and remote:
            raise MatrixError(502, M_UNKNOWN, "Failed to make_join via any server")
        return room_id_or_alias

    # -- membership

    def join(self, requester: User, room_id: str, reason: str | None = None) -> str:
        """POST /rooms/{roomId}/join (use `resolve_room` first for /join/{roomIdOrAlias})."""
        content = {"reason": reason} if reason is not None else {}
        room = self.rooms.get(room_id)
        if room is not None and "join" not in room.members().values():
            # Once its last member left, the server is no longer in the room: a join would have to go
            # through another server, and none is known (Synapse, research 4.17/4.18).
            raise MatrixError(
                404,
                M_UNKNOWN,
                "Can't join remote room because no servers that are in the room have been provided.",
            )
        self._update_membership(requester, room_id, requester.user_id, "join", content)
        return room_id

    def leave(self, requester: User, room_id: str, reason: Any = None) -> None:
        """POST /rooms/{roomId}/leave: the same leave again is answered with the current event; any other
        leave (a reason added) by someone no longer in the room is 403. Synapse keeps a `reason` of any
        JSON type."""
        content = {"reason": reason} if reason is not None else {}
        self._update_membership(requester, room_id, requester.user_id, "leave", content)

    def invite(self, requester: User, room_id: str, target: str, reason: str | None = None) -> None:
        rules.parse_user_id(target)
        content = {"reason": reason} if reason is not None else {}
        self._update_membership(requester, room_id, target, "invite", content)

    def _update_membership(
        self, requester: User, room_id: str, target: str, membership: str, content: dict[str, Any]
    ) -> str:
        """Synapse's update_membership, which every membership change goes through (the join, invite and
        leave endpoints and PUT state m.room.member alike), then the event auth rules for membership."""
        rules.check_membership_content(membership, content)
        content = {**copy.deepcopy(content), "membership": membership}
        profile = self._users.get(target)
        name = profile.displayname if profile is not None else None
        if membership in ("join", "invite", "knock") and "displayname" not in content and name is not None:
            # Synapse fills in the target's profile where the content has none (the mock has no avatars).
            content["displayname"] = name
        room = self.rooms.get(room_id)
        if room is None:
            if membership == "join":
                raise MatrixError(
                    404,
                    M_UNKNOWN,
                    "Can't join remote room because no servers that are in the room have been provided.",
                )
            if membership == "leave":
                raise MatrixError(404, M_UNKNOWN, "Not a known room")
            raise MatrixError(403, M_FORBIDDEN, "Unknown room")
        rules.check_canonical_json(room.version, content)
        was = room.membership(target)
        rules.check_not_banned(was, membership)
        duplicate = room.duplicate_state(requester.user_id, "m.room.member", target, content)
        if duplicate is not None:
            # Synapse answers a duplicate with the current event before any permission check.
            return duplicate
        rules.check_membership_auth(room, requester.user_id, target, membership, was)
        if membership == "invite":
            self._check_local(target)
        return self._send_state(room, requester.user_id, "m.room.member", target, content)

    def _membership_via_state(
        self, requester: User, room_id: str, state_key: str, content: dict[str, Any]
    ) -> str:
        """PUT state m.room.member: Synapse routes it to update_membership, so a "leave" for someone else is
        a kick and "ban" a ban, each with its own power level."""
        membership = content.get("membership")
        if not isinstance(membership, str):
            raise MatrixError(400, M_UNKNOWN, "Invalid membership (must be a string)")
        rules.parse_user_id(state_key)
        return self._update_membership(requester, room_id, state_key, membership, content)

    def joined_rooms(self, requester: User) -> list[str]:
        return list(self._joined.get(requester.user_id, ()))

    def rooms_of(self, user_id: str) -> list[Room]:
        """The rooms the user has a membership in (any: join, invite, leave, ban), in creation order."""
        known = sorted(self._member_of.get(user_id, ()), key=self._created.__getitem__)
        return [self.rooms[room_id] for room_id in known]

    def joined_rooms_of(self, user_id: str) -> list[Room]:
        """The rooms the user is joined to, in creation order."""
        known = sorted(self._joined.get(user_id, ()), key=self._created.__getitem__)
        return [self.rooms[room_id] for room_id in known]

    def refresh_member_events(self, user: User) -> None:
        """After a profile change, like Synapse: a refreshed member event in every room the user is in."""
        for room_id in list(self._joined.get(user.user_id, ())):
            room = self.rooms[room_id]
            content = dict(room.content("m.room.member", user.user_id))
            content.pop("displayname", None)
            if user.displayname is not None:
                content["displayname"] = user.displayname
            self._send_state(room, user.user_id, "m.room.member", user.user_id, content)

    def joined_members(self, requester: User, room_id: str) -> dict[str, dict[str, Any]]:
        """GET /rooms/{roomId}/joined_members: each joined member's name and avatar from their member event
        (both keys always there, null when unset). A member who left gets Synapse's own refusal, in a
        world-readable room too; anyone else, unless the room is world-readable, the "room previews" one."""
        room = self.rooms.get(room_id)
        membership = room.membership(requester.user_id) if room is not None else None
        readable = room is not None and (
            membership == "join"
            or room.content("m.room.history_visibility").get("history_visibility") == "world_readable"
        )
        if membership in ("leave", "ban"):  # even in a world-readable room (corpus `visibility: ...`)
            raise MatrixError(
                403,
                M_FORBIDDEN,
                "Getting joined members while not being a current member of the room is forbidden.",
            )
        if room is None or not readable:
            raise MatrixError(
                403,
                M_FORBIDDEN,
                f"User {requester.user_id} not in room {room_id}, and room previews are disabled",
            )
        joined: dict[str, dict[str, Any]] = {}
        for user_id, member in room.members().items():
            if member == "join":
                content = room.content("m.room.member", user_id)
                joined[user_id] = {
                    "avatar_url": content.get("avatar_url"),
                    "display_name": content.get("displayname"),
                }
        return joined

    # -- state and message events

    def room_state(self, requester: User, room_id: str) -> list[dict[str, Any]]:
        state = self._readable_state(requester, room_id)
        now = self._ids.now_ms()
        return [event.client_format(now) for event in state.values()]

    def state_event(
        self, requester: User, room_id: str, event_type: str, state_key: str, *, as_event: bool = False
    ) -> dict[str, Any]:
        event = self._readable_state(requester, room_id).get((event_type, state_key))
        if event is None:
            raise MatrixError(404, M_NOT_FOUND, "Event not found.")
        if as_event:
            formatted = event.client_format(self._ids.now_ms())
            for legacy in ("age", "user_id", "replaces_state"):
                formatted.pop(legacy, None)
            return formatted
        return copy.deepcopy(event.content)

    def set_state(
        self, requester: User, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        if event_type == "m.room.member":
            return self._membership_via_state(requester, room_id, state_key, content)
        room = self._room_for_member(requester, room_id)
        if event_type == "m.room.create" and state_key == "":
            version = content.get("room_version")
            if isinstance(version, str) and version not in rules.SUPPORTED_ROOM_VERSIONS:
                raise MatrixError(400, M_UNSUPPORTED_ROOM_VERSION, version)
            raise MatrixError(400, M_INVALID_PARAM, "Cannot resend m.room.create event")
        rules.check_canonical_json(room.version, content)
        rules.check_content(event_type, content)
        duplicate = room.duplicate_state(requester.user_id, event_type, state_key, content)
        if duplicate is not None:
            # Synapse de-duplicates before it checks permissions.
            return duplicate
        if state_key.startswith("@") and state_key != requester.user_id:
            raise MatrixError(403, M_FORBIDDEN, "You are not allowed to set others state")
        rules.check_send_level(room, requester.user_id, event_type, is_state=True)
        return self._send_state(room, requester.user_id, event_type, state_key, content)

    def send_event(
        self,
        requester: User,
        device_id: str,
        room_id: str,
        event_type: str,
        txn_id: str,
        content: dict[str, Any],
    ) -> str:
        """PUT /send/{type}/{txnId}: the same (user, device, room, txnId) returns the first event, whatever
        the event type and content (Synapse looks the txn id up before anything else)."""
        key = TxnKey(requester.user_id, device_id, room_id, txn_id)
        if key in self._txns:
            return self._txns[key]
        room = self._room_for_member(requester, room_id)
        rules.check_not_state_only(event_type)
        # The event validator's required keys come before the canonical-JSON check.
        rules.check_content(event_type, content)
        rules.check_canonical_json(room.version, content)
        rules.check_send_level(room, requester.user_id, event_type, is_state=False)
        rules.check_size(event_type, None, content, room_id, requester.user_id)
        event = self._append(room, requester.user_id, event_type, content)
        event.transaction = (device_id, txn_id)
        self._txns[key] = event.event_id
        return event.event_id

    # -- inspection

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "room_id": room.room_id,
                "creator": room.creator,
                "room_version": room.version,
                "is_space": room.is_space,
                "name": room.content("m.room.name").get("name"),
                "join_rule": room.join_rule,
                "members": room.members(),
                "children": room.links("m.space.child"),
                "parents": room.links("m.space.parent"),
                # What a relay's checks read: who said what, and when members joined, in order.
                "talk": [
                    {
                        "event_id": event.event_id,
                        "type": event.type,
                        "sender": event.sender,
                        "state_key": event.state_key,
                        "content": copy.deepcopy(event.content),
                    }
                    for event in room.timeline
                    if event.type in ("m.room.message", "m.room.member")
                ],
            }
            for room in self.rooms.values()
        ]
