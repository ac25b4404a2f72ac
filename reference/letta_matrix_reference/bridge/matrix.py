"""The Matrix Client-Server calls the bridge makes (`/_matrix/client/v3/`), plus Synapse's user admin API.

`MatrixHomeserver` is the connection (one HTTP session shared by every user the bridge acts as) and does
what needs no token: logging in and registering. Each returns a `MatrixClient`: one user's access token
and device, with the calls that user makes. A client that knows its password logs in again, on the same
device, when the server forgets its token."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from letta_matrix_reference.bridge.errors import (
    ApiError,
    ConfigurationError,
    ProtocolError,
    RegistrationError,
)
from letta_matrix_reference.bridge.http import JsonClient, Reconcile, Response, shape

log = logging.getLogger(__name__)

CLIENT = "/_matrix/client/v3"
ADMIN_USERS = "/_synapse/admin/v2/users"
DEVICE_NAME = "letta-bridge"
# A 401 with one of these means "log in again"; a registration's 401 is user-interactive auth instead.
TOKEN_ERRCODES = frozenset({"M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"})


def _segment(value: str) -> str:
    """One path segment: room ids (`!...`), user ids (`@...:server`) and state keys, percent-encoded."""
    return quote(value, safe="")


def _string(body: Any, name: str, what: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str):
        raise ProtocolError(f"Matrix {what} answer has no string {name!r}; it is {shape(body)}")
    return value


@dataclass(frozen=True)
class Credentials:
    user_id: str
    access_token: str = field(repr=False)
    device_id: str | None


@dataclass(frozen=True)
class CreatedRoom:
    """What `create_room` got: the room's id, and whether this call made it (False: it found the room an
    earlier attempt made, which may lack what the server had not done when that attempt failed)."""

    room_id: str
    made: bool


def _wants_creator_listed(exc: ApiError) -> bool:
    """Whether a createRoom's 400 says the power level override must list the creator: Synapse wants that
    for room versions before 12 (and checks it before making anything), while version 12 refuses a creator
    listed there (creators rank above every level)."""
    return exc.status == 400 and "power_level_content_override" in (exc.detail or "")


class MatrixHomeserver(JsonClient):
    service: ClassVar[str] = "matrix"
    # Learnt from the first createRoom the server refuses for it (see `_wants_creator_listed`).
    lists_creators: bool = False

    def client(self, credentials: Credentials, *, password: str | None = None) -> MatrixClient:
        """A client for a session the bridge already holds (e.g. a stored access token)."""
        return MatrixClient(self, credentials, password=password)

    async def login(self, user: str, password: str, *, device_id: str | None = None) -> MatrixClient:
        """m.login.password for `user` (a localpart or a full user id). Passing the `device_id` of an
        earlier login reuses that device instead of leaving one more behind on every run."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": DEVICE_NAME,
        }
        if device_id is not None:
            body["device_id"] = device_id
        answer = (await self.request("POST", f"{CLIENT}/login", json_body=body)).body
        credentials = Credentials(
            _string(answer, "user_id", "login"),
            _string(answer, "access_token", "login"),
            _string(answer, "device_id", "login"),
        )
        return self.client(credentials, password=password)

    async def register(self, localpart: str, password: str) -> MatrixClient:
        """Register `localpart` through user-interactive auth: the first request opens a session (401), the
        second completes the m.login.dummy stage in it. Retrying within one session is safe: the server
        answers a repeat with the account it already made."""
        path = f"{CLIENT}/register"
        body: dict[str, Any] = {
            "username": localpart,
            "password": password,
            "initial_device_display_name": DEVICE_NAME,
        }
        try:
            done = await self.request("POST", path, json_body=body)
        except ApiError as exc:
            if exc.status != 401:
                raise
            session = self._dummy_session(localpart, exc.body)
            try:
                done = await self.request(
                    "POST", path, json_body={**body, "auth": {"type": "m.login.dummy", "session": session}}
                )
            except ApiError as again:
                if again.status == 401:
                    flows = again.body.get("flows") if isinstance(again.body, dict) else None
                    raise RegistrationError(
                        f"registering {localpart}: the homeserver answered 401 again after the m.login.dummy "
                        f"stage ({again.errcode or 'no errcode'}); it wants more than open registration "
                        f"(flows: {flows})"
                    ) from again
                raise
        user_id = _string(done.body, "user_id", "register")
        if "access_token" not in done.body:
            # The server registered without logging in (inhibit_login on its side): log in now.
            return await self.login(user_id, password)
        credentials = Credentials(
            user_id,
            _string(done.body, "access_token", "register"),
            _string(done.body, "device_id", "register"),
        )
        return self.client(credentials, password=password)

    @staticmethod
    def _dummy_session(localpart: str, body: Any) -> str:
        """The UIA session of a registration's 401, if the homeserver offers the m.login.dummy stage. If it
        does not, no agent can get a user: a `ConfigurationError`, which stops the run."""
        flows = body.get("flows") if isinstance(body, dict) else None
        flows = flows if isinstance(flows, list) else []
        if not any(isinstance(flow, dict) and flow.get("stages") == ["m.login.dummy"] for flow in flows):
            stages = [flow.get("stages") for flow in flows if isinstance(flow, dict)]
            raise ConfigurationError(
                "the homeserver does not offer open registration (a flow of m.login.dummy alone), which "
                f"the bridge needs for its agent users; it offers {stages or 'no flows'}. On Synapse: "
                "enable_registration and enable_registration_without_verification, with no email, "
                "captcha, terms or registration token required"
            )
        session = body.get("session")
        if not isinstance(session, str):
            raise ProtocolError(f"registering {localpart}: the 401 offers m.login.dummy but no session")
        return session


class MatrixClient:
    """One user's session: its calls, each with its access token."""

    def __init__(
        self, homeserver: MatrixHomeserver, credentials: Credentials, *, password: str | None = None
    ) -> None:
        self.homeserver = homeserver
        self.credentials = credentials
        self._password = password
        self._login_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"MatrixClient({self.user_id!r}, device {self.credentials.device_id!r})"

    @property
    def user_id(self) -> str:
        return self.credentials.user_id

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        reconcile: Reconcile | None = None,
    ) -> Response:
        token = self.credentials.access_token
        try:
            return await self.homeserver.request(
                method, path, json_body=json_body, params=params, token=token, reconcile=reconcile
            )
        except ApiError as exc:
            if exc.status != 401 or exc.errcode not in TOKEN_ERRCODES or self._password is None:
                raise
        await self._log_in_again(token)
        return await self.homeserver.request(
            method,
            path,
            json_body=json_body,
            params=params,
            token=self.credentials.access_token,
            reconcile=reconcile,
        )

    async def _log_in_again(self, refused: str) -> None:
        assert self._password is not None
        # Many tasks share the admin's and the bot's clients: the first to see the token refused logs in,
        # the others find a new token already there.
        async with self._login_lock:
            if self.credentials.access_token != refused:
                return
            log.info("the homeserver refused the access token of %s; logging in again", self.user_id)
            fresh = await self.homeserver.login(
                self.user_id, self._password, device_id=self.credentials.device_id
            )
            self.credentials = fresh.credentials

    async def set_display_name(self, name: str) -> None:
        path = f"{CLIENT}/profile/{_segment(self.user_id)}/displayname"
        await self._call("PUT", path, json_body={"displayname": name})

    async def create_room(
        self,
        body: Mapping[str, Any],
        *,
        operators: Sequence[str] = (),
        find_existing: Callable[[], Awaitable[str | None]] | None = None,
        look_first: bool = False,
    ) -> CreatedRoom:
        """Create a room (a space with `creation_content.type = m.space`) in which `operators` have power
        level 100 from the start.

        Creating is not idempotent: if an attempt fails in a way that leaves open whether the room was
        made, `find_existing` is asked for it before the request is sent again; with `look_first`, before
        the first request too (an earlier run may have made the room and died before recording it)."""
        if look_first and find_existing is not None:
            existing = await find_existing()
            if existing is not None:
                return CreatedRoom(existing, made=False)
        found: list[str] = []
        reconcile = None
        if find_existing is not None:
            look = find_existing

            async def reconcile() -> Response | None:
                room_id = await look()
                if room_id is None:
                    return None
                found.append(room_id)
                return Response(200, {"room_id": room_id}, {})

        path = f"{CLIENT}/createRoom"
        try:
            answer = await self._call(
                "POST", path, json_body=self._with_operators(body, operators), reconcile=reconcile
            )
        except ApiError as exc:
            if self.homeserver.lists_creators or not operators or not _wants_creator_listed(exc):
                raise
            log.info("the homeserver wants room creators listed in their power levels; listing them")
            self.homeserver.lists_creators = True
            answer = await self._call(
                "POST", path, json_body=self._with_operators(body, operators), reconcile=reconcile
            )
        return CreatedRoom(_string(answer.body, "room_id", "createRoom"), made=not found)

    def _with_operators(self, body: Mapping[str, Any], operators: Sequence[str]) -> dict[str, Any]:
        """`body` with power level 100 for `operators`. The creator is listed only where the server wants
        it (room versions before 12); in version 12 it must not be, and outranks everyone anyway."""
        users = dict.fromkeys((user for user in operators if user != self.user_id), 100)
        if not users:
            return dict(body)
        if self.homeserver.lists_creators:
            users[self.user_id] = 100
        return {**body, "power_level_content_override": {"users": users}}

    async def invite(self, room_id: str, user_id: str) -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_segment(room_id)}/invite", json_body={"user_id": user_id})

    async def join(self, room_id: str) -> None:
        await self._call("POST", f"{CLIENT}/rooms/{_segment(room_id)}/join", json_body={})

    def _state_path(self, room_id: str, event_type: str, state_key: str) -> str:
        path = f"{CLIENT}/rooms/{_segment(room_id)}/state/{_segment(event_type)}"
        return f"{path}/{_segment(state_key)}" if state_key else path

    async def get_state(
        self, room_id: str, event_type: str, state_key: str = "", *, whole: bool = False
    ) -> dict[str, Any]:
        """The content of a state event, or with `whole` the event itself (ApiError 404 M_NOT_FOUND if
        there is none). For a user who left the room: as it was when they left."""
        params = {"format": "event"} if whole else None
        path = self._state_path(room_id, event_type, state_key)
        body = (await self._call("GET", path, params=params)).body
        if not isinstance(body, dict):
            raise ProtocolError(f"Matrix state {event_type} in {room_id} is not an object but {shape(body)}")
        return body

    async def get_room_state(self, room_id: str) -> list[dict[str, Any]]:
        """Every current state event of the room (GET /rooms/{roomId}/state)."""
        body = (await self._call("GET", f"{CLIENT}/rooms/{_segment(room_id)}/state")).body
        if not isinstance(body, list) or not all(isinstance(event, dict) for event in body):
            raise ProtocolError(f"Matrix state of {room_id} is not a list of events but {shape(body)}")
        return body

    async def put_state(
        self, room_id: str, event_type: str, state_key: str, content: Mapping[str, Any]
    ) -> str:
        """Send a state event; its event id. Sending the current content again changes nothing."""
        answer = await self._call(
            "PUT", self._state_path(room_id, event_type, state_key), json_body=dict(content)
        )
        return _string(answer.body, "event_id", f"state {event_type}")

    async def joined_rooms(self) -> list[str]:
        body = (await self._call("GET", f"{CLIENT}/joined_rooms")).body
        rooms = body.get("joined_rooms") if isinstance(body, dict) else None
        if not isinstance(rooms, list) or not all(isinstance(room, str) for room in rooms):
            raise ProtocolError(f"Matrix joined_rooms answer is not a list of ids; it is {shape(body)}")
        return rooms

    # -- the message path (the relay)

    async def define_filter(self, definition: Mapping[str, Any]) -> str:
        """Store a /sync filter; its id (the same definition again answers the same id)."""
        path = f"{CLIENT}/user/{_segment(self.user_id)}/filter"
        answer = await self._call("POST", path, json_body=dict(definition))
        return _string(answer.body, "filter_id", "defineFilter")

    async def sync(self, since: str | None, filter_id: str, timeout_ms: int) -> dict[str, Any]:
        """One /sync: everything after `since` (an initial sync without it), waiting up to `timeout_ms`
        for news."""
        params = {"filter": filter_id, "timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        body = (await self._call("GET", f"{CLIENT}/sync", params=params)).body
        if not isinstance(body, dict) or not isinstance(body.get("next_batch"), str):
            raise ProtocolError(f"Matrix sync answer has no string next_batch; it is {shape(body)}")
        return body

    async def room_messages(
        self,
        room_id: str,
        *,
        from_token: str,
        to_token: str | None = None,
        limit: int = 100,
        event_types: Sequence[str] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the room's history, read backwards from `from_token` (and not past `to_token`,
        which may be a /sync token): its events, newest first, and the token to read on from (None: the
        server has no more)."""
        params = {"dir": "b", "from": from_token, "limit": str(limit)}
        if to_token is not None:
            params["to"] = to_token
        if event_types is not None:
            params["filter"] = json.dumps({"types": list(event_types)})
        body = (await self._call("GET", f"{CLIENT}/rooms/{_segment(room_id)}/messages", params=params)).body
        chunk = body.get("chunk") if isinstance(body, dict) else None
        if not isinstance(chunk, list) or not all(isinstance(event, dict) for event in chunk):
            raise ProtocolError(f"Matrix history of {room_id} has no list of events; it is {shape(body)}")
        end = body.get("end") if isinstance(body, dict) else None
        return chunk, end if isinstance(end, str) else None

    async def send_message(self, room_id: str, content: Mapping[str, Any], txn_id: str) -> str:
        """Send an m.room.message; its event id. The same `txn_id` from the same device sends nothing new:
        the server answers the first event's id, so a retried send never posts twice."""
        path = f"{CLIENT}/rooms/{_segment(room_id)}/send/m.room.message/{_segment(txn_id)}"
        answer = await self._call("PUT", path, json_body=dict(content))
        return _string(answer.body, "event_id", "sendMessage")

    async def set_typing(self, room_id: str, typing: bool, timeout_ms: int = 30_000) -> None:
        path = f"{CLIENT}/rooms/{_segment(room_id)}/typing/{_segment(self.user_id)}"
        body: dict[str, Any] = {"typing": True, "timeout": timeout_ms} if typing else {"typing": False}
        await self._call("PUT", path, json_body=body)

    async def send_receipt(self, room_id: str, event_id: str) -> None:
        """An m.read receipt on `event_id` (unthreaded)."""
        path = f"{CLIENT}/rooms/{_segment(room_id)}/receipt/m.read/{_segment(event_id)}"
        await self._call("POST", path, json_body={})

    async def admin_get_user(self, user_id: str) -> dict[str, Any]:
        """Synapse admin API: an account (ApiError 404 if there is none). Needs a server admin."""
        body = (await self._call("GET", f"{ADMIN_USERS}/{_segment(user_id)}")).body
        if not isinstance(body, dict):
            raise ProtocolError(f"Synapse admin user answer is not an object but {shape(body)}")
        return body

    async def admin_put_user(self, user_id: str, fields: Mapping[str, Any]) -> bool:
        """Synapse admin API: create the account (True, 201) or change it (False, 200)."""
        answer = await self._call("PUT", f"{ADMIN_USERS}/{_segment(user_id)}", json_body=dict(fields))
        return answer.status == 201
