"""The homeserver's state, kept the way Synapse keeps it, with no HTTP in sight.

Users with devices and access tokens, user-interactive-auth sessions, rooms with their state events,
membership and power levels, message events with transaction-id idempotency, aliases. Every public method
takes the lock for its whole duration, so concurrent requests (and a test thread seeding the mock) see each
operation happen at once; the HTTP layer maps `MatrixError` to the response body.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import re
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mockgen.store.errors import MatrixError, UserInteractiveAuthRequired

DEFAULT_ROOM_VERSION = "12"
SUPPORTED_ROOM_VERSIONS = tuple(str(n) for n in range(1, 13))
MAX_DISPLAYNAME = 256
MAX_AVATAR_URL = 1000
MEMBERSHIPS = ("invite", "join", "knock", "leave", "ban")
MAX_EVENT_BYTES = 65536
# Room versions whose events must be canonical JSON (Synapse's `strict_canonicaljson`): 6 and later.
CANONICAL_JSON_VERSIONS = frozenset(SUPPORTED_ROOM_VERSIONS) - {"1", "2", "3", "4", "5"}
CANONICAL_JSON_MAX_INT = 2**53 - 1
# Synapse's `contains_invalid_mxid_characters`: what a localpart may hold.
_LOCALPART_OK = re.compile(r"^[a-z0-9=_\-./+]*$")
_USER_ID = re.compile(r"^@([^:]+):(.+)$")
_WHITESPACE = re.compile(r"\s")
# Synapse's EventValidator: string fields some event types must carry.
REQUIRED_STRINGS = {
    "m.room.name": ("name",),
    "m.room.topic": ("topic",),
    "m.room.message": ("body", "msgtype"),
}
STATE_ONLY = ("m.room.name", "m.room.topic", "m.room.member", "m.room.tombstone")
POWER_LEVEL_INTS = ("ban", "events_default", "invite", "kick", "redact", "state_default", "users_default")

# Synapse's presets: join rule, whether guests may join, power-level override, whether invitees get ops.
PRESETS: dict[str, dict[str, Any]] = {
    "private_chat": {
        "join_rule": "invite",
        "guest_access": "can_join",
        "levels": {"invite": 0},
        "invitees_ops": False,
    },
    "trusted_private_chat": {
        "join_rule": "invite",
        "guest_access": "can_join",
        "levels": {"invite": 0},
        "invitees_ops": True,
    },
    # A top-level "m.call.invite" key, not inside "events": a quirk Synapse really has.
    "public_chat": {
        "join_rule": "public",
        "guest_access": None,
        "levels": {"m.call.invite": 50},
        "invitees_ops": False,
    },
}


def _valid_via(via: Any) -> bool:
    return isinstance(via, list) and bool(via) and all(isinstance(server, str) for server in via)


def _forbidden(message: str) -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", message)


def _locked() -> MatrixError:
    return MatrixError(401, "M_USER_LOCKED", "User account has been locked", soft_logout=True)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class Device:
    device_id: str
    display_name: str | None
    tokens: set[str] = field(default_factory=set)


@dataclass
class User:
    user_id: str
    localpart: str
    password: str | None
    admin: bool = False
    displayname: str | None = None
    deactivated: bool = False
    locked: bool = False
    user_type: str | None = None
    creation_ts: int = 0
    devices: dict[str, Device] = field(default_factory=dict)


@dataclass
class Event:
    event_id: str
    room_id: str
    sender: str
    type: str
    content: dict[str, Any]
    origin_server_ts: int
    state_key: str | None = None
    replaces_state: str | None = None

    def client_format(self, now_ms: int) -> dict[str, Any]:
        unsigned: dict[str, Any] = {"age": max(0, now_ms - self.origin_server_ts)}
        if self.replaces_state:
            unsigned["replaces_state"] = self.replaces_state
        event: dict[str, Any] = {
            "content": copy.deepcopy(self.content),
            "event_id": self.event_id,
            "origin_server_ts": self.origin_server_ts,
            "room_id": self.room_id,
            "sender": self.sender,
            "type": self.type,
            "unsigned": unsigned,
            "user_id": self.sender,
            "age": unsigned["age"],
        }
        if self.state_key is not None:
            event["state_key"] = self.state_key
        if self.replaces_state:
            event["replaces_state"] = self.replaces_state
        return event


@dataclass
class Room:
    room_id: str
    version: str
    creator: str
    additional_creators: tuple[str, ...] = ()
    state: dict[tuple[str, str], Event] = field(default_factory=dict)
    timeline: list[Event] = field(default_factory=list)

    def membership(self, user_id: str) -> str | None:
        event = self.state.get(("m.room.member", user_id))
        return str(event.content.get("membership")) if event else None

    def content(self, event_type: str, state_key: str = "") -> dict[str, Any]:
        event = self.state.get((event_type, state_key))
        return event.content if event else {}

    def duplicate_state(
        self, sender: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str | None:
        """The current event's id when `sender` sends the same content again (Synapse answers with it)."""
        current = self.state.get((event_type, state_key))
        if current is not None and current.sender == sender and current.content == content:
            return current.event_id
        return None

    def state_after(self, event_id: str) -> dict[tuple[str, str], Event]:
        """The state as it was right after the state event `event_id` (every state event is in the
        timeline, in order)."""
        state: dict[tuple[str, str], Event] = {}
        for event in self.timeline:
            if event.state_key is not None:
                state[(event.type, event.state_key)] = event
                if event.event_id == event_id:
                    return state
        raise KeyError(event_id)

    def links(self, event_type: str) -> list[str]:
        """The state keys of the valid `m.space.child` or `m.space.parent` events: the spec ignores one
        without a non-empty `via` list of server names (which is also how a link is removed)."""
        return [
            key
            for (kind, key), event in self.state.items()
            if kind == event_type and _valid_via(event.content.get("via"))
        ]

    @property
    def join_rule(self) -> str:
        return str(self.content("m.room.join_rules").get("join_rule", "invite"))

    @property
    def is_space(self) -> bool:
        return self.content("m.room.create").get("type") == "m.space"

    def power_level(self, user_id: str) -> float:
        # Room version 12: creators outrank every power level.
        if self.version == "12" and (user_id == self.creator or user_id in self.additional_creators):
            return float("inf")
        levels = self.content("m.room.power_levels")
        users = levels.get("users", {})
        if user_id in users:
            return float(users[user_id])
        return float(levels.get("users_default", 0))

    def level_for_event(self, event_type: str, is_state: bool) -> int:
        levels = self.content("m.room.power_levels")
        events = levels.get("events", {})
        if event_type in events:
            return int(events[event_type])
        return int(levels.get("state_default", 50) if is_state else levels.get("events_default", 0))

    def level_for(self, action: str, default: int) -> int:
        return int(self.content("m.room.power_levels").get(action, default))


def check_canonical_json(version: str, *documents: Any) -> None:
    """Synapse's `validate_canonicaljson` in the room versions that require it: integers within
    +-(2**53 - 1) and no floats anywhere in the content (walked without recursion: bodies may nest deep)."""
    if version not in CANONICAL_JSON_VERSIONS:
        return
    pending = list(reversed(documents))
    while pending:
        value = pending.pop()
        if isinstance(value, float):
            raise MatrixError(400, "M_BAD_JSON", "Bad JSON value: float")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > CANONICAL_JSON_MAX_INT:
            raise MatrixError(400, "M_BAD_JSON", "JSON integer out of range")
        if isinstance(value, dict):
            pending.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            pending.extend(reversed(value))


class MatrixStore:
    """One homeserver's worth of users and rooms."""

    def __init__(
        self,
        server_name: str = "matrix.test",
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        registration_enabled: bool = True,
        public_base_url: str | None = None,
    ) -> None:
        self.server_name = server_name
        self.registration_enabled = registration_enabled
        self.public_base_url = public_base_url
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.tokens: dict[str, tuple[str, str]] = {}
        self.rooms: dict[str, Room] = {}
        # user id -> the rooms they have joined (in join order): joined_rooms and profile changes would
        # otherwise walk every room.
        self._joined: dict[str, dict[str, None]] = {}
        self.aliases: dict[str, str] = {}
        self._uia_sessions: dict[str, dict[str, Any]] = {}
        self._txns: dict[tuple[str, str, str, str, str], str] = {}
        self._next_numeric = 1

    # -- ids and time

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _random_letters(self, n: int, alphabet: str = string.ascii_letters) -> str:
        return "".join(self._rng.choices(alphabet, k=n))

    def _opaque(self) -> str:
        return _b64(self._rng.randbytes(32))

    def _new_event_id(self) -> str:
        return "$" + self._opaque()

    def _new_token(self, localpart: str) -> str:
        check = self._random_letters(6, string.ascii_letters + string.digits)
        return f"syt_{_b64(localpart.encode())}_{self._random_letters(20)}_{check}"

    def user_id_for(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def _local_user_id(self, user_id: str) -> str | None:
        """The localpart of a user id on this server, or None."""
        matched = _USER_ID.match(user_id)
        if matched is None or matched.group(2) != self.server_name:
            return None
        return matched.group(1)

    # -- tokens

    def authenticate(self, token: str) -> tuple[User, str]:
        """The (user, device id) an access token belongs to."""
        with self._lock:
            owner = self.tokens.get(token)
            if owner is None or self.users[owner[0]].deactivated:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.", soft_logout=False)
            user = self.users[owner[0]]
            if user.locked:
                raise _locked()
            return user, owner[1]

    def _issue_device(self, user: User, device_id: str | None, display_name: str | None) -> tuple[str, str]:
        device_id = device_id or self._random_letters(10, string.ascii_uppercase)
        device = user.devices.get(device_id)
        if device is None:
            device = user.devices[device_id] = Device(device_id, display_name)
        else:
            # Logging in again with a known device id replaces that device's tokens.
            for old in device.tokens:
                self.tokens.pop(old, None)
            device.tokens.clear()
        token = self._new_token(user.localpart)
        device.tokens.add(token)
        self.tokens[token] = (user.user_id, device_id)
        return device_id, token

    def _revoke_all(self, user: User) -> None:
        for device in user.devices.values():
            for token in device.tokens:
                self.tokens.pop(token, None)
            device.tokens.clear()

    # -- registration

    def _check_username(
        self, localpart: str, assigned_user_id: str | None = None, *, existing_ok: bool = False
    ) -> None:
        if not _LOCALPART_OK.match(localpart):
            raise MatrixError(
                400, "M_INVALID_USERNAME", "User ID can only contain characters a-z, 0-9, or '=_-./+'"
            )
        if not localpart:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID cannot be empty")
        if localpart.startswith("_"):
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may not begin with _")
        user_id = self.user_id_for(localpart)
        if len(user_id) > 255:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may not be longer than 255 characters")
        if user_id in self.users and not existing_ok:
            if assigned_user_id is None:
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
            if user_id != assigned_user_id:
                raise MatrixError(
                    400, "M_UNKNOWN", "A different user ID has already been registered for this session"
                )
        if localpart.isdigit():
            raise MatrixError(400, "M_INVALID_USERNAME", "Numeric user IDs are reserved for guest users.")

    def username_available(self, username: str) -> bool:
        """GET /register/available: unlike /register, the name is not lower-cased first."""
        with self._lock:
            if not self.registration_enabled:
                raise MatrixError(403, "M_FORBIDDEN", "Registration has been disabled")
            self._check_username(username)
            return True

    def _create_user(
        self, localpart: str, password: str | None, *, admin: bool = False, displayname: str | None = None
    ) -> User:
        user = User(
            user_id=self.user_id_for(localpart),
            localpart=localpart,
            password=password,
            admin=admin,
            displayname=localpart if displayname is None else displayname,
            creation_ts=int(self._clock()),
        )
        self.users[user.user_id] = user
        return user

    def _next_numeric_localpart(self) -> str:
        while self.user_id_for(str(self._next_numeric)) in self.users:
            self._next_numeric += 1
        return str(self._next_numeric)

    def _uia_incomplete(self, session_id: str, **extra: Any) -> UserInteractiveAuthRequired:
        return UserInteractiveAuthRequired(
            {"session": session_id, "flows": [{"stages": ["m.login.dummy"]}], "params": {}, **extra}
        )

    def _uia_session(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The registration's UIA session, created on first use; it keeps the latest non-empty request
        fields and the password, so a later request may carry `auth` alone."""
        fields = {key: value for key, value in body.items() if key not in ("auth", "password")}
        auth = body.get("auth")
        session_id = auth.get("session") if isinstance(auth, dict) else None
        if session_id is None:
            session_id = self._random_letters(24)
            self._uia_sessions[session_id] = {"fields": fields, "password": None}
        session = self._uia_sessions.get(str(session_id))
        if session is None:
            raise MatrixError(400, "M_UNKNOWN", f"Unknown session ID: {session_id}")
        if fields:
            session["fields"] = fields
        if body.get("password") is not None:
            session["password"] = body["password"]
        return str(session_id), session

    def register(self, body: dict[str, Any], *, kind: str = "user") -> dict[str, Any]:
        """POST /register, including the user-interactive-auth (m.login.dummy) dance, as Synapse runs it. A
        session that already registered someone answers with that account again."""
        with self._lock:
            if kind == "guest":
                raise MatrixError(403, "M_UNKNOWN", "Guest access is disabled")
            if kind != "user":
                raise MatrixError(400, "M_UNRECOGNIZED", f"Do not understand membership kind: {kind}")
            if not self.registration_enabled:
                raise MatrixError(403, "M_FORBIDDEN", "Registration has been disabled")
            auth = body.get("auth")
            existing = self._uia_sessions.get(str(auth.get("session"))) if isinstance(auth, dict) else None
            assigned = existing.get("registered_user_id") if existing else None
            # The username is checked before the auth stage, so a taken name is a 400 even without auth.
            if body.get("username") is not None:
                self._check_username(str(body["username"]).lower(), assigned_user_id=assigned)
            session_id, session = self._uia_session(body)
            if not isinstance(auth, dict):
                raise self._uia_incomplete(session_id)
            if auth.get("type") is None:
                raise self._uia_incomplete(session_id, completed=session.get("completed", []))
            if auth["type"] != "m.login.dummy":
                # Synapse falls back to checking the dict as a login, which fails like a login would.
                raise MatrixError(400, "M_INVALID_PARAM", "Invalid login submission")
            session["completed"] = ["m.login.dummy"]
            params: dict[str, Any] = session["fields"]
            if assigned is not None:
                user = self.users[assigned]
            else:
                if session["password"] is None:
                    raise MatrixError(400, "M_MISSING_PARAM", "Missing params: password")
                username = params.get("username")
                if username is None:
                    localpart = self._next_numeric_localpart()
                else:
                    localpart = str(username).lower()
                    self._check_username(localpart)
                user = self._create_user(localpart, session["password"])
                session["registered_user_id"] = user.user_id
            result: dict[str, Any] = {"user_id": user.user_id, "home_server": self.server_name}
            if not params.get("inhibit_login"):
                issued_device, token = self._issue_device(
                    user, params.get("device_id"), params.get("initial_device_display_name")
                )
                result.update(access_token=token, device_id=issued_device)
            return result

    # -- login

    def login(
        self,
        *,
        user: str,
        password: str,
        device_id: str | None = None,
        initial_device_display_name: str | None = None,
    ) -> dict[str, Any]:
        """POST /login with m.login.password; `user` is a localpart or a user id, matched in any case."""
        with self._lock:
            lowered = user.lower()
            localpart = self._local_user_id(lowered) if lowered.startswith("@") else lowered
            account = self.users.get(self.user_id_for(localpart)) if localpart is not None else None
            # A deactivated account has no password left, so it fails like a wrong one.
            if account is None or account.password is None or account.password != password:
                raise MatrixError(403, "M_FORBIDDEN", "Invalid username or password")
            if account.deactivated:
                raise MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated")
            if account.locked:
                # Only after the password: a wrong one is the usual 403.
                raise _locked()
            issued_device, token = self._issue_device(account, device_id, initial_device_display_name)
            result: dict[str, Any] = {
                "user_id": account.user_id,
                "access_token": token,
                "home_server": self.server_name,
                "device_id": issued_device,
            }
            if self.public_base_url:
                result["well_known"] = {"m.homeserver": {"base_url": self.public_base_url}}
            return result

    # -- profile

    def _profile_user(self, user_id: str) -> User:
        if not _USER_ID.match(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid user id")
        user = self.users.get(user_id)
        if user is None or self._local_user_id(user_id) is None:
            raise MatrixError(404, "M_NOT_FOUND", "Profile was not found")
        return user

    def get_displayname(self, user_id: str) -> str | None:
        with self._lock:
            return self._profile_user(user_id).displayname

    def _set_displayname(self, target: User, displayname: str | None) -> None:
        # An empty name clears it; like Synapse, every room the user is in gets a refreshed member event.
        target.displayname = displayname or None
        # `_joined` holds exactly the rooms whose member event says "join" (`_send_state` keeps it so).
        for room_id in list(self._joined.get(target.user_id, ())):
            room = self.rooms[room_id]
            content = dict(room.content("m.room.member", target.user_id))
            content.pop("displayname", None)
            if target.displayname is not None:
                content["displayname"] = target.displayname
            self._send_state(room, target.user_id, "m.room.member", target.user_id, content)

    def set_displayname(self, requester: User, user_id: str, displayname: str) -> None:
        with self._lock:
            if user_id != requester.user_id and not requester.admin:
                raise MatrixError(400, "M_FORBIDDEN", "Cannot set another user's displayname")
            target = self._profile_user(user_id)
            if len(displayname) > MAX_DISPLAYNAME:
                raise MatrixError(400, "M_UNKNOWN", f"Displayname is too long (max {MAX_DISPLAYNAME})")
            self._set_displayname(target, displayname)

    # -- rooms

    def _new_room_id(self, version: str) -> str:
        if version == "12":
            return "!" + self._opaque()
        return f"!{self._random_letters(18)}:{self.server_name}"

    def _room_for_member(self, requester: User, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None or room.membership(requester.user_id) != "join":
            raise MatrixError(403, "M_FORBIDDEN", f"User {requester.user_id} not in room {room_id}")
        return room

    def _readable_state(self, requester: User, room_id: str) -> dict[tuple[str, str], Event]:
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
            "M_FORBIDDEN",
            f"User {requester.user_id} not in room {room_id}, and room previews are disabled",
        )

    @staticmethod
    def _check_size(
        event_type: str, state_key: str | None, content: dict[str, Any], room_id: str, sender: str
    ) -> None:
        for name, value in (
            ("type", event_type),
            ("state_key", state_key),
            ("room_id", room_id),
            ("sender", sender),
        ):
            if value is not None and len(value) > 255:
                raise MatrixError(413, "M_TOO_LARGE", f"'{name}' too large")
        encoded = json.dumps(
            {
                "type": event_type,
                "state_key": state_key,
                "content": content,
                "room_id": room_id,
                "sender": sender,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        if len(encoded) > MAX_EVENT_BYTES:
            raise MatrixError(413, "M_TOO_LARGE", "event too large")

    def _send_state(
        self, room: Room, sender: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        duplicate = room.duplicate_state(sender, event_type, state_key, content)
        if duplicate is not None:
            return duplicate
        current = room.state.get((event_type, state_key))
        self._check_size(event_type, state_key, content, room.room_id, sender)
        event = Event(
            event_id=self._new_event_id(),
            room_id=room.room_id,
            sender=sender,
            type=event_type,
            content=copy.deepcopy(content),
            origin_server_ts=self.now_ms(),
            state_key=state_key,
            replaces_state=current.event_id if current else None,
        )
        room.state[(event_type, state_key)] = event
        room.timeline.append(event)
        if event_type == "m.room.member":
            joined = self._joined.setdefault(state_key, {})
            if content.get("membership") == "join":
                joined[room.room_id] = None
            else:
                joined.pop(room.room_id, None)
        return event.event_id

    def _member_content(self, user_id: str, membership: str, **extra: Any) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        user = self.users.get(user_id)
        if user is not None and user.displayname is not None:
            content["displayname"] = user.displayname
        content.update(extra)
        return content

    def _validate_user_ids(self, invites: Iterable[Any]) -> list[str]:
        checked = []
        for invitee in invites:
            if not isinstance(invitee, str) or not _USER_ID.match(invitee):
                raise MatrixError(400, "M_UNKNOWN", f"Invalid user_id: {invitee}")
            checked.append(invitee)
        return checked

    def _check_alias(self, alias_localpart: str) -> str:
        if _WHITESPACE.search(alias_localpart):
            raise MatrixError(400, "M_UNKNOWN", "Invalid characters in room alias")
        if ":" in alias_localpart:
            raise MatrixError(
                400,
                "M_UNKNOWN",
                "':' is not permitted in the room alias name. Please note this expects a local part "
                "— 'wombat', not '#wombat:example.com'.",
            )
        alias = f"#{alias_localpart}:{self.server_name}"
        if alias in self.aliases:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        if len(alias) > 255:
            raise MatrixError(400, "M_INVALID_PARAM", "Can't create aliases longer than 255 characters")
        return alias

    @staticmethod
    def _check_power_levels(content: dict[str, Any]) -> None:
        for key in POWER_LEVEL_INTS:
            if key in content and (not isinstance(content[key], int) or isinstance(content[key], bool)):
                raise MatrixError(400, "M_BAD_JSON", f"\"{key}\": {content[key]!r} is not of type 'integer'")
        for key in ("events", "users", "notifications"):
            value = content.get(key, {})
            if not isinstance(value, dict) or not all(
                isinstance(level, int) and not isinstance(level, bool) for level in value.values()
            ):
                raise MatrixError(400, "M_BAD_JSON", f'"{key}": {value!r} is not an object of integers')

    @staticmethod
    def _initial_power_levels(
        version: str,
        creator: str,
        preset: dict[str, Any],
        invites: list[str],
        override: dict[str, Any] | None,
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
        levels.update(preset["levels"])
        if preset["invitees_ops"] and version != "12":
            levels["users"].update(dict.fromkeys(invites, 100))
        levels.update(copy.deepcopy(override or {}))
        MatrixStore._check_power_levels(levels)
        return levels

    def _add_create_event(self, room: Room, creation_content: dict[str, Any]) -> None:
        content = dict(creation_content)
        content["room_version"] = room.version
        if room.version not in ("11", "12"):
            content.setdefault("creator", room.creator)
        if room.additional_creators:
            content["additional_creators"] = list(room.additional_creators)
        self._check_size("m.room.create", "", content, room.room_id, room.creator)
        event = Event(
            # Room version 12 derives the room id from the create event: they share their hash.
            event_id=("$" + room.room_id[1:]) if room.version == "12" else self._new_event_id(),
            room_id=room.room_id,
            sender=room.creator,
            type="m.room.create",
            content=content,
            origin_server_ts=self.now_ms(),
            state_key="",
        )
        room.state[("m.room.create", "")] = event
        room.timeline.append(event)

    def create_room(self, requester: User, body: dict[str, Any]) -> str:
        """POST /createRoom: Synapse's checks, then the events it sends, in its order."""
        with self._lock:
            version = str(body.get("room_version", DEFAULT_ROOM_VERSION))
            if version not in SUPPORTED_ROOM_VERSIONS:
                raise MatrixError(
                    400, "M_UNSUPPORTED_ROOM_VERSION", "Your homeserver does not support this room version"
                )
            check_canonical_json(
                version,
                body.get("creation_content"),
                body.get("power_level_content_override"),
                [entry.get("content") for entry in body.get("initial_state", [])],
            )
            alias = self._check_alias(str(body["room_alias_name"])) if body.get("room_alias_name") else None
            invites = self._validate_user_ids(body.get("invite", []))
            # Synapse only checks `visibility == "private"`: anything else picks the public preset.
            private = body.get("visibility", "private") == "private"
            preset = PRESETS[body.get("preset") or ("private_chat" if private else "public_chat")]
            creator = requester.user_id
            levels = self._initial_power_levels(
                version, creator, preset, invites, body.get("power_level_content_override")
            )
            initial_state = {
                (str(entry["type"]), str(entry.get("state_key", ""))): dict(entry["content"])
                for entry in body.get("initial_state", [])
            }
            for (event_type, _), content in initial_state.items():
                self._check_content(event_type, content)
            if "name" in body:
                self._check_content("m.room.name", {"name": body["name"]})
            if any(event_type == "m.room.create" for event_type, _ in initial_state):
                # Synapse sends initial_state after the create event, and event auth refuses a create event
                # with prev_events (auth rule 1.1). Synapse has persisted the room's first events by then;
                # here nothing is created.
                raise MatrixError(403, "M_FORBIDDEN", "Create event has prev events")
            room = Room(
                room_id=self._new_room_id(version),
                version=version,
                creator=creator,
                additional_creators=(
                    tuple(dict.fromkeys(invites)) if version == "12" and preset["invitees_ops"] else ()
                ),
            )
            self._add_create_event(room, body.get("creation_content") or {})
            self.rooms[room.room_id] = room
            self._send_state(room, creator, "m.room.member", creator, self._member_content(creator, "join"))
            defaults: list[tuple[str, dict[str, Any]]] = [("m.room.power_levels", levels)]
            if alias is not None:
                self.aliases[alias] = room.room_id
                defaults.append(("m.room.canonical_alias", {"alias": alias}))
            defaults.append(("m.room.join_rules", {"join_rule": preset["join_rule"]}))
            defaults.append(("m.room.history_visibility", {"history_visibility": "shared"}))
            if preset["guest_access"]:
                defaults.append(("m.room.guest_access", {"guest_access": preset["guest_access"]}))
            for event_type, content in defaults:
                # An initial_state entry replaces the default event of its type, at its own place.
                if (event_type, "") not in initial_state:
                    self._send_state(room, creator, event_type, "", content)
            for (event_type, state_key), content in initial_state.items():
                self._send_state(room, creator, event_type, state_key, content)
            if "name" in body:
                self._send_state(room, creator, "m.room.name", "", {"name": body["name"]})
            if "topic" in body:
                topic = {"topic": body["topic"], "m.topic": {"m.text": [{"body": body["topic"]}]}}
                self._send_state(room, creator, "m.room.topic", "", topic)
            for invitee in invites:
                extra = {"is_direct": True} if body.get("is_direct") else {}
                invite = self._member_content(invitee, "invite", **extra)
                self._send_state(room, creator, "m.room.member", invitee, invite)
            return room.room_id

    def resolve_room(self, room_id_or_alias: str) -> str:
        with self._lock:
            if room_id_or_alias.startswith("#"):
                room_id = self.aliases.get(room_id_or_alias)
                if room_id is None:
                    raise MatrixError(404, "M_NOT_FOUND", f"Room alias {room_id_or_alias} not found")
                return room_id
            if not room_id_or_alias.startswith("!"):
                raise MatrixError(400, "M_UNKNOWN", f"{room_id_or_alias} was not legal room ID or room alias")
            return room_id_or_alias

    def join(self, requester: User, room_id: str, reason: str | None = None) -> str:
        """POST /rooms/{roomId}/join (use `resolve_room` first for /join/{roomIdOrAlias})."""
        with self._lock:
            content = {"reason": reason} if reason is not None else {}
            self._update_membership(requester, room_id, requester.user_id, "join", content)
            return room_id

    def leave(self, requester: User, room_id: str) -> None:
        with self._lock:
            self._update_membership(requester, room_id, requester.user_id, "leave", {})

    def invite(self, requester: User, room_id: str, target: str, reason: str | None = None) -> None:
        with self._lock:
            self._parse_user_id(target)
            content = {"reason": reason} if reason is not None else {}
            self._update_membership(requester, room_id, target, "invite", content)

    @staticmethod
    def _parse_user_id(user_id: str) -> None:
        """Synapse's UserID.from_string."""
        if not user_id.startswith("@"):
            raise MatrixError(400, "M_INVALID_PARAM", "Expected UserID string to start with '@'")
        if not _USER_ID.match(user_id):
            raise MatrixError(400, "M_INVALID_PARAM", "Expected UserID of the form '@localname:domain'")

    def _update_membership(
        self, requester: User, room_id: str, target: str, membership: str, content: dict[str, Any]
    ) -> str:
        """Synapse's update_membership, which every membership change goes through (the join, invite and
        leave endpoints and PUT state m.room.member alike), then the event auth rules for membership."""
        if len(content.get("displayname") or "") > MAX_DISPLAYNAME:
            raise MatrixError(400, "M_BAD_JSON", f"Displayname is too long (max {MAX_DISPLAYNAME})")
        if len(content.get("avatar_url") or "") > MAX_AVATAR_URL:
            raise MatrixError(400, "M_BAD_JSON", f"Avatar URL is too long (max {MAX_AVATAR_URL})")
        if membership not in MEMBERSHIPS:
            raise MatrixError(400, "M_UNKNOWN", "Invalid membership key")
        content = {**copy.deepcopy(content), "membership": membership}
        profile = self.users.get(target)
        name = profile.displayname if profile is not None else None
        if membership in ("join", "invite", "knock") and "displayname" not in content and name is not None:
            # Synapse fills in the target's profile where the content has none (the mock has no avatars).
            content["displayname"] = name
        room = self.rooms.get(room_id)
        if room is None:
            if membership == "join":
                raise MatrixError(
                    404,
                    "M_UNKNOWN",
                    "Can't join remote room because no servers that are in the room have been provided.",
                )
            if membership == "leave":
                raise MatrixError(404, "M_UNKNOWN", "Not a known room")
            raise MatrixError(403, "M_FORBIDDEN", "Unknown room")
        check_canonical_json(room.version, content)
        was = room.membership(target)
        if was == "ban" and membership not in ("ban", "leave"):
            raise MatrixError(403, "M_BAD_STATE", f"Cannot {membership} user who was banned")
        duplicate = room.duplicate_state(requester.user_id, "m.room.member", target, content)
        if duplicate is not None:
            # Synapse answers a duplicate with the current event before any permission check.
            return duplicate
        self._check_membership_auth(room, requester.user_id, target, membership, was)
        return self._send_state(room, requester.user_id, "m.room.member", target, content)

    @staticmethod
    def _check_membership_auth(
        room: Room, sender: str, target: str, membership: str, was: str | None
    ) -> None:
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

    def joined_rooms(self, requester: User) -> list[str]:
        with self._lock:
            return list(self._joined.get(requester.user_id, ()))

    # -- state

    def room_state(self, requester: User, room_id: str) -> list[dict[str, Any]]:
        with self._lock:
            state = self._readable_state(requester, room_id)
            now = self.now_ms()
            return [event.client_format(now) for event in state.values()]

    def state_event(
        self, requester: User, room_id: str, event_type: str, state_key: str, *, as_event: bool = False
    ) -> dict[str, Any]:
        with self._lock:
            event = self._readable_state(requester, room_id).get((event_type, state_key))
            if event is None:
                raise MatrixError(404, "M_NOT_FOUND", "Event not found.")
            if as_event:
                formatted = event.client_format(self.now_ms())
                for legacy in ("age", "user_id", "replaces_state"):
                    formatted.pop(legacy, None)
                return formatted
            return copy.deepcopy(event.content)

    @staticmethod
    def _check_content(event_type: str, content: dict[str, Any]) -> None:
        """Synapse's EventValidator for the event types it knows."""
        for name in REQUIRED_STRINGS.get(event_type, ()):
            if name not in content:
                raise MatrixError(400, "M_UNKNOWN", f"'{name}' not in content")
            if not isinstance(content[name], str):
                raise MatrixError(400, "M_UNKNOWN", f"'{name}' not a string type")
        if event_type == "m.room.power_levels":
            MatrixStore._check_power_levels(content)

    def _check_send_level(self, room: Room, user_id: str, event_type: str, is_state: bool) -> None:
        needed = room.level_for_event(event_type, is_state)
        have = room.power_level(user_id)
        if have < needed:
            raise MatrixError(
                403,
                "M_FORBIDDEN",
                "You don't have permission to post that to the room. "
                f"user_level ({int(have)}) < send_level ({needed})",
            )

    def set_state(
        self, requester: User, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        with self._lock:
            if event_type == "m.room.member":
                return self._membership_via_state(requester, room_id, state_key, content)
            room = self._room_for_member(requester, room_id)
            if event_type == "m.room.create" and state_key == "":
                version = content.get("room_version")
                if isinstance(version, str) and version not in SUPPORTED_ROOM_VERSIONS:
                    raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", version)
                raise MatrixError(400, "M_INVALID_PARAM", "Cannot resend m.room.create event")
            check_canonical_json(room.version, content)
            self._check_content(event_type, content)
            duplicate = room.duplicate_state(requester.user_id, event_type, state_key, content)
            if duplicate is not None:
                # Synapse de-duplicates before it checks permissions.
                return duplicate
            if state_key.startswith("@") and state_key != requester.user_id:
                raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to set others state")
            self._check_send_level(room, requester.user_id, event_type, is_state=True)
            return self._send_state(room, requester.user_id, event_type, state_key, content)

    def _membership_via_state(
        self, requester: User, room_id: str, state_key: str, content: dict[str, Any]
    ) -> str:
        """PUT state m.room.member: Synapse routes it to update_membership, so a "leave" for someone else is
        a kick and "ban" a ban, each with its own power level."""
        membership = content.get("membership")
        if not isinstance(membership, str):
            raise MatrixError(400, "M_UNKNOWN", "Invalid membership (must be a string)")
        self._parse_user_id(state_key)
        return self._update_membership(requester, room_id, state_key, membership, content)

    def send_event(
        self,
        requester: User,
        device_id: str,
        room_id: str,
        event_type: str,
        txn_id: str,
        content: dict[str, Any],
    ) -> str:
        """PUT /send/{type}/{txnId}: the same (user, device, room, type, txnId) returns the first event."""
        with self._lock:
            key = (requester.user_id, device_id, room_id, event_type, txn_id)
            if key in self._txns:
                return self._txns[key]
            room = self._room_for_member(requester, room_id)
            if event_type in STATE_ONLY:
                raise MatrixError(400, "M_UNKNOWN", f"'{event_type}' must be state events")
            check_canonical_json(room.version, content)
            self._check_content(event_type, content)
            self._check_send_level(room, requester.user_id, event_type, is_state=False)
            self._check_size(event_type, None, content, room_id, requester.user_id)
            event = Event(
                event_id=self._new_event_id(),
                room_id=room_id,
                sender=requester.user_id,
                type=event_type,
                content=copy.deepcopy(content),
                origin_server_ts=self.now_ms(),
            )
            room.timeline.append(event)
            self._txns[key] = event.event_id
            return event.event_id

    # -- Synapse admin API

    def _admin_view(self, user: User) -> dict[str, Any]:
        return {
            "name": user.user_id,
            "admin": user.admin,
            "deactivated": user.deactivated,
            "locked": user.locked,
            "shadow_banned": False,
            "creation_ts": user.creation_ts,
            "appservice_id": None,
            "consent_server_notice_sent": None,
            "consent_version": None,
            "consent_ts": None,
            "user_type": user.user_type,
            "is_guest": False,
            "suspended": False,
            "displayname": user.displayname,
            "avatar_url": None,
            "threepids": [],
            "external_ids": [],
            "erased": False,
            "last_seen_ts": None,
        }

    def _require_admin(self, requester: User) -> None:
        if not requester.admin:
            raise MatrixError(403, "M_FORBIDDEN", "You are not a server admin")

    def admin_get_user(self, requester: User, user_id: str) -> dict[str, Any]:
        with self._lock:
            self._require_admin(requester)
            if not user_id.startswith("@"):
                raise MatrixError(400, "M_INVALID_PARAM", "Expected UserID string to start with '@'")
            if self._local_user_id(user_id) is None:
                raise MatrixError(400, "M_UNKNOWN", "Can only look up local users")
            user = self.users.get(user_id)
            if user is None:
                raise MatrixError(404, "M_NOT_FOUND", "User not found")
            return self._admin_view(user)

    def _deactivate(self, user: User) -> None:
        user.deactivated = True
        user.password = None
        self._revoke_all(user)

    def admin_put_user(
        self, requester: User, user_id: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Create (201) or modify (200) an account the way Synapse's admin API does."""
        with self._lock:
            self._require_admin(requester)
            if not user_id.startswith("@"):
                raise MatrixError(400, "M_INVALID_PARAM", "Expected UserID string to start with '@'")
            localpart = self._local_user_id(user_id)
            if localpart is None:
                raise MatrixError(400, "M_UNKNOWN", "This endpoint can only be used with local users")
            if body.get("deactivated") and body.get("locked"):
                raise MatrixError(400, "M_UNKNOWN", "An user can't be deactivated and locked")
            user = self.users.get(user_id)
            if user is None:
                self._check_username(localpart)
                user = self._create_user(
                    localpart,
                    body.get("password"),
                    admin=bool(body.get("admin", False)),
                    displayname=body.get("displayname"),
                )
                user.user_type = body.get("user_type")
                return 201, self._admin_view(user)
            if "displayname" in body:
                self._set_displayname(user, body["displayname"])
            if "admin" in body:
                if user is requester and not body["admin"]:
                    raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
                user.admin = bool(body["admin"])
            if body.get("password") is not None:
                user.password = body["password"]
                if body.get("logout_devices", True):
                    self._revoke_all(user)
            if "deactivated" in body:
                if body["deactivated"] and not user.deactivated:
                    self._deactivate(user)
                elif not body["deactivated"]:
                    user.deactivated = False
            if "locked" in body:
                user.locked = bool(body["locked"])
            if "user_type" in body:
                user.user_type = body["user_type"]
            return 200, self._admin_view(user)

    # -- seeding and inspection

    def add_user(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
        check_name: bool = False,
    ) -> str:
        """Create an account directly (seed data); an existing one is updated. `check_name`: refuse a name
        registration would refuse (MatrixError)."""
        with self._lock:
            localpart = localpart.lower()
            if check_name:
                self._check_username(localpart, existing_ok=True)
            user = self.users.get(self.user_id_for(localpart))
            if user is None:
                user = self._create_user(localpart, password, admin=admin, displayname=displayname)
            else:
                user.password, user.admin = password, admin
                if displayname is not None:
                    user.displayname = displayname
            return user.user_id

    def user_by_name(self, name: str) -> User:
        with self._lock:
            user_id = name if name.startswith("@") else self.user_id_for(name.lower())
            user = self.users.get(user_id)
            if user is None:
                raise KeyError(f"no user {user_id}")
            return user

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            users = [
                {
                    "user_id": user.user_id,
                    "admin": user.admin,
                    "displayname": user.displayname,
                    "devices": len(user.devices),
                }
                for user in self.users.values()
            ]
            rooms = []
            for room in self.rooms.values():
                members = {
                    key: str(ev.content.get("membership"))
                    for (kind, key), ev in room.state.items()
                    if kind == "m.room.member"
                }
                rooms.append(
                    {
                        "room_id": room.room_id,
                        "creator": room.creator,
                        "room_version": room.version,
                        "is_space": room.is_space,
                        "name": room.content("m.room.name").get("name"),
                        "join_rule": room.join_rule,
                        "members": members,
                        "children": room.links("m.space.child"),
                        "parents": room.links("m.space.parent"),
                    }
                )
            return {"server_name": self.server_name, "users": users, "rooms": rooms}
