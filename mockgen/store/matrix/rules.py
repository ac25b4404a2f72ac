"""Synapse's rules as pure functions: user ids and localparts, aliases, room versions and their JSON limits,
event content, power levels, membership transitions. Nothing here reads or changes the store; every check
raises the `MatrixError` Synapse would answer with."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contracts.validation import compact_json
from mockgen.store.errors import MatrixError
from mockgen.store.matrix.errcodes import (
    M_BAD_JSON,
    M_BAD_STATE,
    M_FORBIDDEN,
    M_INVALID_PARAM,
    M_INVALID_USERNAME,
    M_MISSING_PARAM,
    M_TOO_LARGE,
    M_UNKNOWN,
    M_UNRECOGNIZED,
)
from mockgen.store.matrix.model import Room

DEFAULT_ROOM_VERSION = "12"
SUPPORTED_ROOM_VERSIONS = tuple(str(n) for n in range(1, 13))
# Room versions whose events must be canonical JSON (Synapse's `strict_canonicaljson`): 6 and later.
CANONICAL_JSON_VERSIONS = frozenset(SUPPORTED_ROOM_VERSIONS) - {"1", "2", "3", "4", "5"}
CANONICAL_JSON_MAX_INT = 2**53 - 1
MAX_EVENT_BYTES = 65536
# Synapse's limit on user ids, aliases and an event's type, state key, room id and sender.
MAX_ID_LENGTH = 255
MAX_DISPLAYNAME = 256
MAX_AVATAR_URL = 1000
MEMBERSHIPS = ("invite", "join", "knock", "leave", "ban")
# Synapse's `contains_invalid_mxid_characters`: what a localpart may hold.
_LOCALPART_OK = re.compile(r"^[a-z0-9=_\-./+]*$")
_USER_ID = re.compile(r"^@([^:]+):(.+)$")
_WHITESPACE = re.compile(r"\s")
_V12_ROOM_ID = re.compile(r"^![A-Za-z0-9_-]{43}$")
# A DNS name, an IPv4 address or a bracketed IPv6 literal, with an optional port (Synapse's
# parse_and_validate_server_name).
_SERVER_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")
# Synapse's EventValidator: string fields some event types must carry.
REQUIRED_STRINGS = {
    "m.room.name": ("name",),
    "m.room.topic": ("topic",),
    "m.room.message": ("body", "msgtype"),
}
STATE_ONLY = ("m.room.name", "m.room.topic", "m.room.member", "m.room.tombstone")
# Event types Synapse 1.163 cannot send through /send at all: it answers 500 M_UNKNOWN ("Tried to send member
# event through non-member codepath" for m.room.member). The mock refuses them like the state-only types
# (400 M_UNKNOWN) and stores nothing; the contract notes the difference (`x-server-answers-500`).
SEND_REFUSED = ("m.room.member", "m.room.create", "m.room.power_levels")
POWER_LEVEL_INTS = ("ban", "events_default", "invite", "kick", "redact", "state_default", "users_default")


@dataclass(frozen=True)
class Preset:
    """A createRoom preset: join rule, whether guests may join, power-level override, whether invitees get
    ops."""

    join_rule: str
    guest_access: str | None
    levels: dict[str, Any]
    invitees_ops: bool


PRESETS: dict[str, Preset] = {
    "private_chat": Preset("invite", "can_join", {"invite": 0}, invitees_ops=False),
    "trusted_private_chat": Preset("invite", "can_join", {"invite": 0}, invitees_ops=True),
    # A top-level "m.call.invite" key, not inside "events": a quirk Synapse really has.
    "public_chat": Preset("public", None, {"m.call.invite": 50}, invitees_ops=False),
}


def _forbidden(message: str) -> MatrixError:
    return MatrixError(403, M_FORBIDDEN, message)


# -- user ids and localparts


def user_id_for(localpart: str, server_name: str) -> str:
    return f"@{localpart}:{server_name}"


def is_user_id(value: str) -> bool:
    return _USER_ID.match(value) is not None


def _is_valid_domain_specific(value: str, sigils: tuple[str, ...]) -> bool:
    """Synapse's DomainSpecificString.is_valid: one of `sigils`, a localpart (which may be empty: Synapse
    does not reject one), `:` and a server name that parses as one."""
    if value[:1] not in sigils:
        return False
    _, colon, server = value[1:].partition(":")
    return bool(colon) and _valid_server_name(server)


def is_valid_user_id(value: str) -> bool:
    """Synapse's UserID.is_valid."""
    return _is_valid_domain_specific(value, ("@",))


def local_localpart(user_id: str, server_name: str) -> str | None:
    """The localpart of a user id on `server_name`, or None."""
    matched = _USER_ID.match(user_id)
    if matched is None or matched.group(2) != server_name:
        return None
    return matched.group(1)


def parse_user_id(user_id: str) -> None:
    """Synapse's UserID.from_string: a sigil and a colon are all it asks (`@::x` parses, with an empty
    localpart); what follows decides whether such an id is anyone's."""
    if not user_id.startswith("@"):
        raise MatrixError(400, M_INVALID_PARAM, "Expected UserID string to start with '@'")
    if ":" not in user_id:
        raise MatrixError(400, M_INVALID_PARAM, "Expected UserID of the form '@localname:domain'")


def server_of(user_id: str) -> str:
    """The server part of a (well-formed) user id."""
    return user_id.split(":", 1)[1]


def _valid_server_name(name: str) -> bool:
    return bool(name) and _SERVER_NAME.match(name) is not None


def is_room_id_or_alias(value: str) -> bool:
    """Synapse's RoomID/RoomAlias `is_valid`; or a room version 12 room id, `!` and 43 url-safe base64
    characters with no server part."""
    if value[:1] == "!" and _V12_ROOM_ID.match(value):
        return True
    return _is_valid_domain_specific(value, ("!", "#"))


def validate_user_ids(invites: Iterable[Any]) -> list[str]:
    checked = []
    for invitee in invites:
        if not isinstance(invitee, str) or not is_user_id(invitee):
            raise MatrixError(400, M_UNKNOWN, f"Invalid user_id: {invitee}")
        checked.append(invitee)
    return checked


def check_localpart(localpart: str, server_name: str) -> None:
    """The checks of Synapse's `check_username` that come before it looks the name up."""
    if not _LOCALPART_OK.match(localpart):
        raise MatrixError(
            400, M_INVALID_USERNAME, "User ID can only contain characters a-z, 0-9, or '=_-./+'"
        )
    if not localpart:
        raise MatrixError(400, M_INVALID_USERNAME, "User ID cannot be empty")
    if localpart.startswith("_"):
        raise MatrixError(400, M_INVALID_USERNAME, "User ID may not begin with _")
    if len(user_id_for(localpart, server_name)) > MAX_ID_LENGTH:
        raise MatrixError(400, M_INVALID_USERNAME, "User ID may not be longer than 255 characters")


def check_registration_kind(kind: str) -> None:
    """/register's `kind`: guests are refused (guest access is off), anything else but `user` is unknown."""
    if kind == "guest":
        raise MatrixError(403, M_UNKNOWN, "Guest access is disabled")
    if kind != "user":
        raise MatrixError(400, M_UNRECOGNIZED, f"Do not understand membership kind: {kind}")


def check_not_numeric(localpart: str) -> None:
    """The check of Synapse's `check_username` that comes after the lookup."""
    if localpart.isdigit():
        raise MatrixError(400, M_INVALID_USERNAME, "Numeric user IDs are reserved for guest users.")


# -- aliases


def check_alias_localpart(alias_localpart: str) -> None:
    if _WHITESPACE.search(alias_localpart):
        raise MatrixError(400, M_UNKNOWN, "Invalid characters in room alias")
    if ":" in alias_localpart:
        raise MatrixError(
            400,
            M_UNKNOWN,
            "':' is not permitted in the room alias name. Please note this expects a local part "
            "— 'wombat', not '#wombat:example.com'.",
        )


def check_alias_length(alias: str) -> None:
    if len(alias) > MAX_ID_LENGTH:
        raise MatrixError(400, M_INVALID_PARAM, "Can't create aliases longer than 255 characters")


# -- event content and size (room version rules)


def check_canonical_json(version: str, *documents: Any) -> None:
    """Synapse's `validate_canonicaljson` in the room versions that require it: integers within
    +-(2**53 - 1) and no floats anywhere in the content (walked without recursion: bodies may nest deep)."""
    if version not in CANONICAL_JSON_VERSIONS:
        return
    pending = list(reversed(documents))
    while pending:
        value = pending.pop()
        if isinstance(value, float):
            raise MatrixError(400, M_BAD_JSON, "Bad JSON value: float")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > CANONICAL_JSON_MAX_INT:
            raise MatrixError(400, M_BAD_JSON, "JSON integer out of range")
        if isinstance(value, dict):
            pending.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            pending.extend(reversed(value))


def check_size(
    event_type: str, state_key: str | None, content: dict[str, Any], room_id: str, sender: str
) -> None:
    for name, value in (
        ("type", event_type),
        ("state_key", state_key),
        ("room_id", room_id),
        ("sender", sender),
    ):
        if value is not None and len(value) > MAX_ID_LENGTH:
            raise MatrixError(413, M_TOO_LARGE, f"'{name}' too large")
    encoded = compact_json(
        {"type": event_type, "state_key": state_key, "content": content, "room_id": room_id, "sender": sender}
    ).encode()
    if len(encoded) > MAX_EVENT_BYTES:
        raise MatrixError(413, M_TOO_LARGE, "event too large")


def check_content(event_type: str, content: dict[str, Any]) -> None:
    """Synapse's EventValidator for the event types it knows."""
    for name in REQUIRED_STRINGS.get(event_type, ()):
        if name not in content:
            raise MatrixError(400, M_UNKNOWN, f"'{name}' not in content")
        if not isinstance(content[name], str):
            raise MatrixError(400, M_UNKNOWN, f"'{name}' not a string type")
    if event_type == "m.room.power_levels":
        check_power_levels(content)


def check_not_state_only(event_type: str) -> None:
    if event_type in STATE_ONLY or event_type in SEND_REFUSED:
        raise MatrixError(400, M_UNKNOWN, f"'{event_type}' must be state events")


def check_initial_state(entries: list[Any]) -> None:
    """createRoom's `initial_state` entries, after the preset. Synapse answers 500 to an entry that is not an
    object or lacks `type` or `content`; the mock answers 400 as the contract documents."""
    for entry in entries:
        if not isinstance(entry, dict):
            raise MatrixError(400, M_BAD_JSON, "initial_state entries must be objects")
        for key in ("type", "content"):
            if key not in entry:
                raise MatrixError(400, M_MISSING_PARAM, f"Missing params: ['{key}']")
        if not isinstance(entry["type"], str) or not isinstance(entry.get("state_key", ""), str):
            raise MatrixError(400, M_BAD_JSON, "initial_state type and state_key must be strings")
        if not isinstance(entry["content"], dict):
            raise MatrixError(400, M_BAD_JSON, "initial_state content must be an object")


def check_preset(preset: Any) -> None:
    """createRoom's `preset`, checked after the room version and before the alias (Synapse's order)."""
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise MatrixError(400, M_BAD_JSON, f"{preset!r} is not a valid preset")


# -- power levels


def check_power_levels(content: dict[str, Any]) -> None:
    for key in POWER_LEVEL_INTS:
        if key in content and (not isinstance(content[key], int) or isinstance(content[key], bool)):
            raise MatrixError(400, M_BAD_JSON, f"\"{key}\": {content[key]!r} is not of type 'integer'")
    for key in ("events", "users", "notifications"):
        value = content.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(level, int) and not isinstance(level, bool) for level in value.values()
        ):
            raise MatrixError(400, M_BAD_JSON, f'"{key}": {value!r} is not an object of integers')


def initial_power_levels(
    version: str, creator: str, preset: Preset, invites: list[str], override: dict[str, Any] | None
) -> dict[str, Any]:
    """Synapse's default levels, then the preset's, then the client's override (shallow updates)."""
    levels: dict[str, Any] = {
        "ban": 50,
        "events": {
            "m.room.avatar": 50,
            "m.room.canonical_alias": 50,
            "m.room.encryption": 100,
            "m.room.history_visibility": 100,
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.server_acl": 100,
            "m.room.tombstone": 150 if version == "12" else 100,
        },
        "events_default": 0,
        "historical": 100,
        "invite": 50,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        # Room version 12 lists no creator: creators outrank every level.
        "users": {} if version == "12" else {creator: 100},
        "users_default": 0,
    }
    levels.update(preset.levels)
    if preset.invitees_ops and version != "12":
        levels["users"].update(dict.fromkeys(invites, 100))
    levels.update(copy.deepcopy(override or {}))
    check_power_levels(levels)
    return levels


def check_send_level(room: Room, user_id: str, event_type: str, is_state: bool) -> None:
    needed = room.level_for_event(event_type, is_state)
    have = room.power_level(user_id)
    if have < needed:
        raise MatrixError(
            403,
            M_FORBIDDEN,
            "You don't have permission to post that to the room. "
            f"user_level ({int(have)}) < send_level ({needed})",
        )


# -- membership


def check_membership_content(membership: str, content: dict[str, Any]) -> None:
    """What Synapse's update_membership checks before it looks at the room."""
    if len(content.get("displayname") or "") > MAX_DISPLAYNAME:
        raise MatrixError(400, M_BAD_JSON, f"Displayname is too long (max {MAX_DISPLAYNAME})")
    if len(content.get("avatar_url") or "") > MAX_AVATAR_URL:
        raise MatrixError(400, M_BAD_JSON, f"Avatar URL is too long (max {MAX_AVATAR_URL})")
    if membership not in MEMBERSHIPS:
        raise MatrixError(400, M_UNKNOWN, "Invalid membership key")


def check_not_banned(was: str | None, membership: str) -> None:
    """A banned user can only be unbanned (a leave) or banned again."""
    if was == "ban" and membership not in ("ban", "leave"):
        raise MatrixError(403, M_BAD_STATE, f"Cannot {membership} user who was banned")


def check_membership_auth(room: Room, sender: str, target: str, membership: str, was: str | None) -> None:
    """The event auth rules for m.room.member (Synapse's _is_membership_change_allowed)."""
    caller = room.membership(sender)
    if membership not in ("join", "knock"):
        rejecting = caller in ("invite", "knock") and membership == "leave" and target == sender
        if caller != "join" and not rejecting:
            raise _forbidden(f"{sender} not in room {room.room_id}.")
    user_level, target_level = room.power_level(sender), room.power_level(target)
    if membership == "invite":
        if was == "join":
            raise _forbidden(f"{target} is already in the room.")
        if user_level < room.level_for("invite", 0):
            raise _forbidden("You don't have permission to invite users")
    elif membership == "join":
        if target != sender:
            raise _forbidden("Cannot force another user to join.")
        if room.join_rule != "public" and caller not in ("join", "invite"):
            raise _forbidden("You are not invited to this room.")
    elif membership == "leave":
        if was == "ban" and user_level < room.level_for("ban", 50):
            raise _forbidden(f"You cannot unban user {target}.")
        if target != sender and (user_level < room.level_for("kick", 50) or user_level <= target_level):
            raise _forbidden(f"You cannot kick user {target}.")
    elif membership == "ban":
        if user_level < room.level_for("ban", 50):
            raise _forbidden("You don't have permission to ban")
        if user_level <= target_level:
            raise _forbidden("You don't have permission to ban this user")
    elif room.join_rule not in ("knock", "knock_restricted"):
        raise _forbidden("You don't have permission to knock")
    elif target != sender:
        raise _forbidden("You cannot knock for other users")
    elif was == "join":
        raise _forbidden("You cannot knock on a room you are already in")
    elif was == "invite":
        raise _forbidden("You are already invited to this room")
