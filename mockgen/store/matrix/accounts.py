"""Accounts: users, their devices and access tokens, registration with its user-interactive-auth sessions,
login, profiles and Synapse's admin API on users.

Not locked on its own: `MatrixStore` holds its lock around every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mockgen.store.errors import MatrixError, UserInteractiveAuthRequired
from mockgen.store.matrix import rules
from mockgen.store.matrix.errcodes import (
    M_FORBIDDEN,
    M_INVALID_PARAM,
    M_MISSING_PARAM,
    M_NOT_FOUND,
    M_UNKNOWN,
    M_UNKNOWN_TOKEN,
    M_USER_DEACTIVATED,
    M_USER_IN_USE,
    M_USER_LOCKED,
)
from mockgen.store.matrix.ids import Ids
from mockgen.store.matrix.model import Device, TokenOwner, UiaSession, User


def no_check() -> None:
    """The default of the `check_*` hooks: a caller that checked the request whole has nothing left."""


def _locked() -> MatrixError:
    return MatrixError(401, M_USER_LOCKED, "User account has been locked", soft_logout=True)


class Accounts:
    """The homeserver's accounts. `profile_changed` is called after a user's displayname changes, so the rooms
    they are in can refresh their member events (as Synapse's profile handler does)."""

    def __init__(
        self,
        ids: Ids,
        *,
        registration_enabled: bool,
        public_base_url: str | None,
        profile_changed: Callable[[User], None],
    ) -> None:
        self._ids = ids
        self.registration_enabled = registration_enabled
        self.public_base_url = public_base_url
        self._profile_changed = profile_changed
        self.users: dict[str, User] = {}
        self.tokens: dict[str, TokenOwner] = {}
        self._uia_sessions: dict[str, UiaSession] = {}
        # Display names an admin set for local users who have no account (Synapse keeps the profile row).
        self._orphan_profiles: dict[str, str | None] = {}
        self._next_numeric = 1

    def user_id_for(self, localpart: str) -> str:
        return rules.user_id_for(localpart, self._ids.server_name)

    def _local_localpart(self, user_id: str) -> str | None:
        return rules.local_localpart(user_id, self._ids.server_name)

    # -- tokens

    def authenticate(self, token: str) -> tuple[User, str]:
        """The (user, device id) an access token belongs to."""
        owner = self.tokens.get(token)
        if owner is None or self.users[owner.user_id].deactivated:
            raise MatrixError(401, M_UNKNOWN_TOKEN, "Invalid access token passed.", soft_logout=False)
        user = self.users[owner.user_id]
        if user.locked:
            raise _locked()
        return user, owner.device_id

    def _issue_device(self, user: User, device_id: str | None, display_name: str | None) -> tuple[str, str]:
        # Everything that can fail comes before the first write: a login never leaves a device without its
        # token. Only an absent device id is generated: Synapse takes "" as a device id like any other.
        device_id = self._ids.device_id() if device_id is None else device_id
        token = self._ids.access_token(user.localpart)
        device = user.devices.get(device_id)
        if device is None:
            device = user.devices[device_id] = Device(device_id, display_name)
        # Logging in again with a known device id adds a token: the device's earlier ones stay valid
        # (Synapse 1.163).
        device.tokens.add(token)
        self.tokens[token] = TokenOwner(user.user_id, device_id)
        return device_id, token

    def _revoke_all(self, user: User) -> None:
        for device in user.devices.values():
            for token in device.tokens:
                self.tokens.pop(token, None)
            device.tokens.clear()

    def logout(self, token: str) -> None:
        """POST /logout: the token dies and its device with it (gone from the device list, research 5.6)."""
        owner = self.tokens.pop(token)
        device = self.users[owner.user_id].devices.pop(owner.device_id, None)
        for other in device.tokens if device is not None else ():
            self.tokens.pop(other, None)

    def logout_all(self, user: User) -> None:
        """POST /logout/all: every token and device of the user, the caller's included (research
        5.17-5.21)."""
        self._revoke_all(user)
        user.devices.clear()

    # -- registration

    def _check_username(
        self, localpart: str, assigned_user_id: str | None = None, *, existing_ok: bool = False
    ) -> None:
        """Synapse's `check_username`: the name's form, whether it is taken, then whether it is numeric."""
        rules.check_localpart(localpart, self._ids.server_name)
        user_id = self.user_id_for(localpart)
        if user_id in self.users and not existing_ok:
            if assigned_user_id is None:
                raise MatrixError(400, M_USER_IN_USE, "User ID already taken.")
            if user_id != assigned_user_id:
                raise MatrixError(
                    400, M_UNKNOWN, "A different user ID has already been registered for this session"
                )
        rules.check_not_numeric(localpart)

    def username_available(self, username: str) -> bool:
        """GET /register/available: unlike /register, the name is not lower-cased first."""
        if not self.registration_enabled:
            raise MatrixError(403, M_FORBIDDEN, "Registration has been disabled")
        self._check_username(username)
        return True

    def _create_user(
        self, localpart: str, password: str | None, *, admin: bool = False, displayname: str | None = None
    ) -> User:
        user = self._new_user(localpart, password, admin=admin, displayname=displayname)
        self._enter(user)
        return user

    def _enter(self, user: User) -> None:
        """A new account into the directory; a profile an admin set before it existed is now its own."""
        self.users[user.user_id] = user
        self._orphan_profiles.pop(user.user_id, None)

    def _new_user(
        self, localpart: str, password: str | None, *, admin: bool = False, displayname: str | None = None
    ) -> User:
        """An account not yet in the directory."""
        return User(
            user_id=self.user_id_for(localpart),
            localpart=localpart,
            password=password,
            admin=admin,
            displayname=localpart if displayname is None else displayname,
            creation_ts=self._ids.now_s(),
        )

    def _next_numeric_localpart(self) -> str:
        while self.user_id_for(str(self._next_numeric)) in self.users:
            self._next_numeric += 1
        return str(self._next_numeric)

    @staticmethod
    def _uia_incomplete(session_id: str, **extra: Any) -> UserInteractiveAuthRequired:
        return UserInteractiveAuthRequired(
            {"session": session_id, "flows": [{"stages": ["m.login.dummy"]}], "params": {}, **extra}
        )

    def _uia_session(self, body: dict[str, Any]) -> tuple[str, UiaSession]:
        """The registration's UIA session, created on first use, updated with this request."""
        fields = {key: value for key, value in body.items() if key not in ("auth", "password")}
        auth = body.get("auth")
        session_id = auth.get("session") if isinstance(auth, dict) else None
        if session_id is None:
            session_id = self._ids.uia_session_id()
            self._uia_sessions[session_id] = UiaSession(fields)
        session = self._uia_sessions.get(str(session_id))
        if session is None:
            raise MatrixError(400, M_UNKNOWN, f"Unknown session ID: {session_id}")
        if fields:
            session.fields = fields
        if body.get("password") is not None:
            session.password = body["password"]
        return str(session_id), session

    def register(
        self, body: dict[str, Any], *, kind: str = "user", check_fields: Callable[[], None] = no_check
    ) -> dict[str, Any]:
        """POST /register, including the user-interactive-auth (m.login.dummy) dance, as Synapse runs it. A
        session that already registered someone answers with that account again. `check_fields` answers the
        request's own violations at the point Synapse looks at the fields: after the session is found."""
        rules.check_registration_kind(kind)
        if not self.registration_enabled:
            raise MatrixError(403, M_FORBIDDEN, "Registration has been disabled")
        auth = body.get("auth")
        session_named = auth.get("session") if isinstance(auth, dict) else None
        existing = self._uia_sessions.get(str(session_named)) if session_named is not None else None
        if session_named is not None and existing is None:
            # Before the username: an unknown session wins over a taken name.
            raise MatrixError(400, M_UNKNOWN, f"Unknown session ID: {session_named}")
        check_fields()
        assigned = existing.registered_user_id if existing is not None else None
        # The username is checked before the auth stage, so a taken name is a 400 even without auth.
        if body.get("username") is not None:
            self._check_username(str(body["username"]).lower(), assigned_user_id=assigned)
        session_id, session = self._uia_session(body)
        if not isinstance(auth, dict):
            raise self._uia_incomplete(session_id)
        if auth.get("type") is None:
            raise self._uia_incomplete(session_id, completed=list(session.completed))
        if auth["type"] != "m.login.dummy":
            # Synapse falls back to checking the dict as a login, which fails like a login would.
            raise MatrixError(400, M_INVALID_PARAM, "Invalid login submission")
        session.completed = ["m.login.dummy"]
        params = session.fields
        if assigned is not None:
            user = self.users[assigned]
        else:
            if session.password is None:
                raise MatrixError(400, M_MISSING_PARAM, "Missing params: password")
            username = params.get("username")
            if username is None:
                localpart = self._next_numeric_localpart()
            else:
                localpart = str(username).lower()
                self._check_username(localpart)
            user = self._new_user(localpart, session.password)
        result: dict[str, Any] = {"user_id": user.user_id, "home_server": self._ids.server_name}
        if not params.get("inhibit_login"):
            issued_device, token = self._issue_device(
                user, params.get("device_id"), params.get("initial_device_display_name")
            )
            result.update(access_token=token, device_id=issued_device)
        # The account is kept only with its device (Synapse keeps an account whose device failed, P01).
        self._enter(user)
        session.registered_user_id = user.user_id
        return result

    # -- login

    def login(
        self,
        *,
        user: str,
        password: str,
        device_id: str | None = None,
        initial_device_display_name: str | None = None,
        check_device: Callable[[], None] = no_check,
    ) -> dict[str, Any]:
        """POST /login with m.login.password; `user` is a localpart or a user id, matched in any case.
        `check_device` answers the request's violations at the device fields, once the credentials pass."""
        lowered = user.lower()
        localpart = self._local_localpart(lowered) if lowered.startswith("@") else lowered
        account = self.users.get(self.user_id_for(localpart)) if localpart is not None else None
        # A deactivated account has no password left, so it fails like a wrong one.
        if account is None or account.password is None or account.password != password:
            raise MatrixError(403, M_FORBIDDEN, "Invalid username or password")
        if account.deactivated:
            raise MatrixError(403, M_USER_DEACTIVATED, "This account has been deactivated")
        if account.locked:
            # Only after the password: a wrong one is the usual 403.
            raise _locked()
        check_device()
        issued_device, token = self._issue_device(account, device_id, initial_device_display_name)
        result: dict[str, Any] = {
            "user_id": account.user_id,
            "access_token": token,
            "home_server": self._ids.server_name,
            "device_id": issued_device,
        }
        if self.public_base_url:
            result["well_known"] = {"m.homeserver": {"base_url": self.public_base_url}}
        return result

    # -- profile

    @staticmethod
    def _parse_profile_user(user_id: str) -> str:
        """The server part of a profile's user id (Synapse's `UserID.is_valid`, worded as profiles do)."""
        if not rules.is_valid_user_id(user_id):
            raise MatrixError(400, M_INVALID_PARAM, "Invalid user id")
        return user_id.split(":", 1)[1]

    def get_displayname(self, user_id: str) -> str | None:
        """The display name, None when cleared. A user on another server (the server name compared exactly,
        so an upper-cased one is remote too) would need federation, which is off."""
        server = self._parse_profile_user(user_id)
        if server != self._ids.server_name:
            raise MatrixError(403, M_FORBIDDEN, f"Federation denied with {server}.")
        user = self.users.get(user_id)
        if user is not None:
            return user.displayname
        if user_id in self._orphan_profiles:
            return self._orphan_profiles[user_id]
        raise MatrixError(404, M_NOT_FOUND, "Profile was not found")

    @staticmethod
    def _stored_displayname(displayname: str | None) -> str | None:
        """What Synapse stores: "" clears the name, anything else is stripped of surrounding whitespace (so
        "   " is kept as "")."""
        if not displayname:
            return None
        return displayname.strip()

    def _set_displayname(self, target: User, displayname: str | None) -> None:
        target.displayname = self._stored_displayname(displayname)
        self._profile_changed(target)

    def set_displayname(self, requester: User, user_id: str, displayname: str) -> None:
        """Synapse's order: the id parses, is local (for admins too), is the requester's own (unless an admin
        asks), then the length. An admin may name a local user who has no account: the profile is kept."""
        server = self._parse_profile_user(user_id)
        if server != self._ids.server_name:
            raise MatrixError(400, M_UNKNOWN, "User is not hosted on this homeserver")
        if user_id != requester.user_id and not requester.admin:
            raise MatrixError(400, M_FORBIDDEN, "Cannot set another user's displayname")
        if len(displayname) > rules.MAX_DISPLAYNAME:
            raise MatrixError(400, M_UNKNOWN, f"Displayname is too long (max {rules.MAX_DISPLAYNAME})")
        target = self.users.get(user_id)
        if target is None:
            self._orphan_profiles[user_id] = self._stored_displayname(displayname)
            return
        self._set_displayname(target, displayname)

    # -- Synapse admin API

    @staticmethod
    def _admin_view(user: User) -> dict[str, Any]:
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

    @staticmethod
    def _require_admin(requester: User) -> None:
        if not requester.admin:
            raise MatrixError(403, M_FORBIDDEN, "You are not a server admin")

    def admin_get_user(self, requester: User, user_id: str) -> dict[str, Any]:
        self._require_admin(requester)
        if not user_id.startswith("@"):
            raise MatrixError(400, M_INVALID_PARAM, "Expected UserID string to start with '@'")
        if self._local_localpart(user_id) is None:
            raise MatrixError(400, M_UNKNOWN, "Can only look up local users")
        user = self.users.get(user_id)
        if user is None:
            raise MatrixError(404, M_NOT_FOUND, "User not found")
        return self._admin_view(user)

    def _deactivate(self, user: User) -> None:
        user.deactivated = True
        user.password = None
        self._revoke_all(user)

    def admin_put_user(
        self,
        requester: User,
        user_id: str,
        body: dict[str, Any],
        *,
        check_body: Callable[[], None] = no_check,
    ) -> tuple[int, dict[str, Any]]:
        """Create (201) or modify (200) an account the way Synapse's admin API does: one change after the
        other, so a refused change leaves the earlier ones made. Synapse's order: admin, the user id, local,
        (a new account's) localpart, then the body (`check_body` answers the request's own violations)."""
        self._require_admin(requester)
        if not user_id.startswith("@"):
            raise MatrixError(400, M_INVALID_PARAM, "Expected UserID string to start with '@'")
        localpart = self._local_localpart(user_id)
        if localpart is None:
            raise MatrixError(400, M_UNKNOWN, "This endpoint can only be used with local users")
        user = self.users.get(user_id)
        if user is None:
            rules.check_localpart(localpart, self._ids.server_name)
        check_body()
        if body.get("deactivated") and body.get("locked"):
            raise MatrixError(400, M_UNKNOWN, "An user can't be deactivated and locked")
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
                raise MatrixError(400, M_UNKNOWN, "You may not demote yourself.")
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
        user_id = name if name.startswith("@") else self.user_id_for(name.lower())
        user = self.users.get(user_id)
        if user is None:
            raise KeyError(f"no user {user_id}")
        return user

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {
                "user_id": user.user_id,
                "admin": user.admin,
                "displayname": user.displayname,
                "devices": len(user.devices),
            }
            for user in self.users.values()
        ]
