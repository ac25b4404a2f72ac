"""Matrix Client-Server handlers: one function per operationId of specs/matrix.yaml (snake_case).

The request has been checked against the spec before a handler runs; handlers only hold behaviour."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from mockgen.http.dialects import Reply
from mockgen.http.dispatch import Call, orders_checks
from mockgen.store.errors import MatrixError
from mockgen.store.matrix import rules
from mockgen.store.matrix.errcodes import M_FORBIDDEN, M_INVALID_PARAM, M_NOT_JSON, M_UNKNOWN
from mockgen.store.matrix.rules import check_registration_kind
from mockgen.store.matrix.tokens import check_page_token

SPEC_VERSIONS = [
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
    "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
]  # fmt: skip


def ok(body: Any) -> Reply:
    return Reply(200, body)


def get_versions(call: Call) -> Reply:
    return ok({"versions": SPEC_VERSIONS, "unstable_features": {}})


def get_login_flows(call: Call) -> Reply:
    return ok({"flows": [{"type": "m.login.password"}, {"type": "m.login.application_service"}]})


@orders_checks
def login(call: Call) -> Reply:
    """Synapse's order: the body, `type`, `refresh_token`, who (the legacy `user` field, when present,
    replaces `identifier` whatever that holds), the password, then the credentials; the device id's form only
    once they pass."""
    call.reject("")
    call.reject("/type")
    call.reject("/refresh_token")
    body = call.body
    if "user" in body:
        call.ignore("/identifier")
        user = body["user"]
    else:
        call.reject("/identifier")
        identifier = body.get("identifier")
        user = identifier.get("user") if isinstance(identifier, dict) else None
    call.reject("/password")
    device_fields = ("/device_id", "/initial_device_display_name")
    before_credentials = _top_fields(call) - set(device_fields)
    if before_credentials:
        call.reject(*before_credentials)
    if not isinstance(user, str):
        raise MatrixError(400, M_INVALID_PARAM, "Invalid login submission")
    return ok(
        call.world.matrix.login(
            user=user,
            password=body["password"],
            device_id=body.get("device_id"),
            initial_device_display_name=body.get("initial_device_display_name"),
            check_device=call.reject,
        )
    )


def _top_fields(call: Call) -> set[str]:
    """Every place (`Call.reject` selector) at which the request has a violation left."""
    found = set()
    for violation in call.rejected:
        if violation.location == "request body":
            found.add("/" + violation.pointer.split("/")[1] if violation.pointer else "")
        elif violation.location.startswith("query parameter '"):
            found.add("?" + violation.location.split("'")[1])
    return found


@orders_checks
def register(call: Call) -> Reply:
    """Synapse's order: the body, `kind`, an access token sent along, the `auth` dict, the UIA session, the
    username's and password's types and lengths, then the username's form and whether it is taken."""
    call.reject("")
    call.ignore("?kind")
    kind = call.query.get("kind", "user")
    check_registration_kind(kind)
    if call.token is not None:
        raise MatrixError(
            400,
            M_UNKNOWN,
            "An access token should not be provided on requests to /register "
            "(except if type is m.login.application_service)",
        )
    call.reject("/auth")

    def check_fields() -> None:
        # The username's form is the store's to check, after its type and length.
        call.rejected = tuple(
            v for v in call.rejected if not (v.pointer == "/username" and v.keyword == "pattern")
        )
        call.reject()

    return ok(call.world.matrix.register(call.body, kind=kind, check_fields=check_fields))


def check_username_availability(call: Call) -> Reply:
    return ok({"available": call.world.matrix.username_available(call.query["username"])})


def get_token_owner(call: Call) -> Reply:
    return ok({"user_id": call.requester.user_id, "is_guest": False, "device_id": call.device_id})


def get_display_name(call: Call) -> Reply:
    displayname = call.world.matrix.get_displayname(call.path["userId"])
    # A cleared name is answered without the key, not as null.
    return ok({} if displayname is None else {"displayname": displayname})


@orders_checks
def set_display_name(call: Call) -> Reply:
    """The body and `displayname`'s presence and type first; its length only after the user id, its server
    and the permission (the store checks those, then the length)."""
    call.rejected = tuple(v for v in call.rejected if v.keyword != "maxLength")
    call.reject()
    call.world.matrix.set_displayname(call.requester, call.path["userId"], call.body["displayname"])
    return ok({})


def create_room(call: Call) -> Reply:
    return ok({"room_id": call.world.matrix.create_room(call.requester, call.body)})


def _reason(call: Call) -> str | None:
    return call.body.get("reason") if isinstance(call.body, dict) else None


def join_room_by_id(call: Call) -> Reply:
    return ok({"room_id": call.world.matrix.join(call.requester, call.path["roomId"], _reason(call))})


def join_room(call: Call) -> Reply:
    matrix = call.world.matrix
    # The servers to join a room through: the deprecated `server_name` and `via` alike.
    via = [*call.query.get("server_name", []), *call.query.get("via", [])]
    room_id = matrix.resolve_room(call.path["roomIdOrAlias"], via)
    return ok({"room_id": matrix.join(call.requester, room_id, _reason(call))})


def invite_user(call: Call) -> Reply:
    call.world.matrix.invite(call.requester, call.path["roomId"], call.body["user_id"], _reason(call))
    return ok({})


def get_room_state(call: Call) -> Reply:
    return ok(call.world.matrix.room_state(call.requester, call.path["roomId"]))


def _state_event(call: Call, state_key: str) -> Reply:
    return ok(
        call.world.matrix.state_event(
            call.requester,
            call.path["roomId"],
            call.path["eventType"],
            state_key,
            as_event=call.query.get("format") == "event",
        )
    )


def get_room_state_event(call: Call) -> Reply:
    return _state_event(call, "")


def get_room_state_with_key(call: Call) -> Reply:
    return _state_event(call, call.path["stateKey"])


def _set_state(call: Call, state_key: str) -> Reply:
    event_id = call.world.matrix.set_state(
        call.requester, call.path["roomId"], call.path["eventType"], state_key, call.body
    )
    return ok({"event_id": event_id})


def set_room_state(call: Call) -> Reply:
    return _set_state(call, "")


def set_room_state_with_key(call: Call) -> Reply:
    return _set_state(call, call.path["stateKey"])


def get_joined_rooms(call: Call) -> Reply:
    return ok({"joined_rooms": call.world.matrix.joined_rooms(call.requester)})


def send_message(call: Call) -> Reply:
    assert call.device_id is not None
    event_id = call.world.matrix.send_event(
        call.requester,
        call.device_id,
        call.path["roomId"],
        call.path["eventType"],
        call.path["txnId"],
        call.body,
    )
    return ok({"event_id": event_id})


def admin_get_user(call: Call) -> Reply:
    return ok(call.world.matrix.admin_get_user(call.requester, call.path["userId"]))


@orders_checks
def admin_put_user(call: Call) -> Reply:
    """Synapse's order: admin, the user id, local, (for a new account) the localpart, then the body."""
    status, user = call.world.matrix.admin_put_user(
        call.requester, call.path["userId"], call.body, check_body=call.reject
    )
    return Reply(status, user)


# -- the message path (issue 13): leave, logout, typing, receipts, read markers, joined members. Each answers
# exactly `{}` where it answers nothing (matrix-nio's schemas for these allow no other key).


def leave_room(call: Call) -> Reply:
    reason = call.body.get("reason") if isinstance(call.body, dict) else None
    call.world.matrix.leave(call.requester, call.path["roomId"], reason)
    return ok({})


def logout(call: Call) -> Reply:
    assert call.token is not None
    call.world.matrix.logout(call.token)
    return ok({})


def logout_all(call: Call) -> Reply:
    call.world.matrix.logout_all(call.requester)
    return ok({})


def _typing_path(call: Call) -> None:
    # Synapse parses the path's user id before it reads the body.
    rules.parse_user_id(call.path["userId"])


@orders_checks
def set_typing(call: Call) -> Reply:
    """Synapse checks the path (whose typing, which room) before it reads the body."""
    _typing_path(call)
    call.reject()
    body = call.body
    call.world.matrix.set_typing(
        call.requester, call.path["roomId"], call.path["userId"], bool(body["typing"]), body.get("timeout")
    )
    return ok({})


def _receipt_path(call: Call) -> None:
    call.world.matrix.check_receipt_path(call.path["roomId"], call.path["receiptType"], call.path["eventId"])


@orders_checks
def post_receipt(call: Call) -> Reply:
    """Synapse checks the path (room, receipt type, event id) before it reads the body."""
    _receipt_path(call)
    call.reject()
    call.world.matrix.post_receipt(
        call.requester, call.path["roomId"], call.path["receiptType"], call.path["eventId"], call.body
    )
    return ok({})


def set_read_marker(call: Call) -> Reply:
    call.world.matrix.set_read_markers(call.requester, call.path["roomId"], call.body)
    return ok({})


def get_joined_members_by_room(call: Call) -> Reply:
    return ok({"joined": call.world.matrix.joined_members(call.requester, call.path["roomId"])})


# -- /sync and filters


def _sync_param(call: Call, name: str, allowed: tuple[str, ...], message: str) -> str | None:
    value = call.query.get(name)
    if value is None:
        return None
    if str(value) not in allowed:
        raise MatrixError(400, M_INVALID_PARAM, message)
    return str(value)


def _query_integer(name: str, value: object) -> int:
    """Synapse's parse_integer: its query values are bytes, so int() reads ASCII digits only (with the sign,
    spaces and underscores int() allows); a negative one is refused too."""
    try:
        number = int(str(value).encode("utf-8"))
    except ValueError:
        raise MatrixError(400, M_INVALID_PARAM, f"Query parameter {name} must be an integer") from None
    if number < 0:
        raise MatrixError(400, M_INVALID_PARAM, f"Query parameter {name} must be a positive integer.")
    return number


@orders_checks
async def sync(call: Call) -> Reply:
    """GET /sync: Synapse's order of checks [1.29-1.45] in its words, then an answer at once (initial syncs,
    or news), or a wait of up to `timeout` ms for news, woken by each step of the store's stream that concerns
    the user (and waiting again when it brought nothing new); a reset (the store is gone) or a stop ends the
    wait with the empty answer."""
    call.rejected = ()  # every parameter is checked below, in Synapse's order and words
    if "from" in parse_qs(call.query_string, keep_blank_values=True):
        raise MatrixError(400, M_UNKNOWN, "'from' is not a valid query parameter. Did you mean 'since'?")
    timeout_value = call.query.get("timeout")
    timeout_ms = 0 if timeout_value is None else _query_integer("timeout", timeout_value)
    presence = _sync_param(
        call,
        "set_presence",
        ("online", "unavailable", "offline"),
        "Query parameter 'set_presence' must be one of ['online', 'unavailable', 'offline']",
    )
    full_state = _sync_param(
        call,
        "full_state",
        ("true", "false"),
        "Boolean query parameter 'full_state' must be one of ['true', 'false']",
    )
    matrix = call.world.matrix
    raw_filter = call.query.get("filter")
    sync_filter = matrix.sync_filter(call.requester, None if raw_filter is None else str(raw_filter))
    since = call.query.get("since")
    since = None if since is None else str(since)
    wakeups = call.world.wakeups
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    while True:
        with wakeups.armed(call.requester.user_id) as woken:
            answer, news = matrix.sync(
                call.requester,
                since,
                sync_filter,
                full_state=full_state == "true",
                presence=presence,
                device_id=call.device_id,
            )
            remaining = deadline - asyncio.get_running_loop().time()
            if news or remaining <= 0 or wakeups.closing or call.world.matrix is not matrix:
                return ok(answer)
            try:
                async with asyncio.timeout(remaining):
                    await woken
            except TimeoutError:
                pass


def _filter_owner(call: Call, verb: str) -> None:
    """The path's user id (400), then whose filters (403), before the body [2.x]."""
    rules.parse_user_id(call.path["userId"])
    if call.path["userId"] != call.requester.user_id:
        raise MatrixError(403, M_FORBIDDEN, f"Cannot {verb} filters for other users")


@orders_checks
def define_filter(call: Call) -> Reply:
    _filter_owner(call, "create")
    call.reject("")
    # The filter's own schema is the store's check (400 M_UNKNOWN, as Synapse words it).
    call.rejected = ()
    filter_id = call.world.matrix.create_filter(call.requester, call.path["userId"], call.body)
    return ok({"filter_id": filter_id})


@orders_checks
def get_filter(call: Call) -> Reply:
    _filter_owner(call, "get")
    call.rejected = ()  # the id's form is the store's check, in Synapse's words
    return ok(call.world.matrix.get_filter(call.requester, call.path["userId"], call.path["filterId"]))


MESSAGES_DEFAULT_LIMIT = 10
MESSAGES_MAX_LIMIT = 1000


def _strings_of(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


@orders_checks
def get_room_events(call: Call) -> Reply:
    """GET /rooms/{roomId}/messages: after the token, `dir`, `from`, `to`, `limit`, `filter` in Synapse's
    words [3.6-3.12, 3.27, 3.37], then the membership (the store)."""
    call.rejected = ()  # every parameter is checked here, in Synapse's order and words
    query = call.query
    direction = str(query.get("dir", "f"))
    if direction not in ("b", "f"):
        raise MatrixError(400, M_INVALID_PARAM, "Query parameter 'dir' must be one of ['b', 'f']")
    from_token = query.get("from")
    to_token = query.get("to")
    for name, token in (("from", from_token), ("to", to_token)):
        if token is not None:
            check_page_token(str(token), name)
    limit = MESSAGES_DEFAULT_LIMIT
    if query.get("limit") is not None:
        limit = _query_integer("limit", query["limit"])
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    lazy = False
    if query.get("filter") is not None:
        try:
            definition = json.loads(str(query["filter"]))
        except ValueError:
            definition = None
        if definition is None and str(query["filter"]).strip() != "null":
            raise MatrixError(400, M_NOT_JSON, "Query parameter filter must be a valid JSON object")
        if not definition:
            # Synapse keeps a filter only when its JSON is truthy: `[]`, `{}`, `0` are no filter [3.38].
            definition = {}
        if not isinstance(definition, dict):
            raise MatrixError(400, M_NOT_JSON, "Query parameter filter must be a valid JSON object")
        types = _strings_of(definition.get("types"))
        not_types = _strings_of(definition.get("not_types")) or ()
        lazy = definition.get("lazy_load_members") is True
    return ok(
        call.world.matrix.messages(
            call.requester,
            call.path["roomId"],
            direction=direction,
            from_token=None if from_token is None else str(from_token),
            to_token=None if to_token is None else str(to_token),
            limit=min(limit, MESSAGES_MAX_LIMIT),
            types=types,
            not_types=not_types,
            lazy_load_members=lazy,
        )
    )
