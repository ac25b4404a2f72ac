"""/sync: what a user's sync answers from the homeserver's one stream (events, typing, receipts, room account
data each carry a position: `Ids.next_stream`), under the filter `filters.py` makes of the request's.
An incremental sync reads the user's own rooms and, in each, the events after `since` (what a long-poll
woken by each of its rooms' events would otherwise pay for in every room and whole timelines).

Not locked on its own: `MatrixStore` holds its lock around every call. Reads the rooms and the ephemeral data
(never writes them). Every rule is Synapse 1.163's as probed for issue 13 (the probe numbers in brackets)."""

from __future__ import annotations

import copy
import re
from typing import Any, NamedTuple

from mockgen.store.matrix.ephemeral import Ephemeral
from mockgen.store.matrix.filters import SyncFilter
from mockgen.store.matrix.ids import Ids
from mockgen.store.matrix.model import Event, Room, User
from mockgen.store.matrix.presence import Presence
from mockgen.store.matrix.rooms import Rooms
from mockgen.store.matrix.tokens import parse_since, token
from mockgen.store.matrix.visibility import visible

# Synapse's prejoin state (room_prejoin_state): what an invite shows of the room [1.67].
_INVITE_STATE = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.encryption",
)
DEFAULT_PUSH_RULES: dict[str, Any] = {
    "global": {"override": [], "content": [], "room": [], "sender": [], "underride": []}
}


def _membership_after(room: Room, user_id: str, upto: int) -> dict[str, str]:
    """The user's membership right after each event of the room's timeline up to `upto` (exclusive)."""
    membership = "leave"
    found: dict[str, str] = {}
    for event in room.timeline[:upto]:
        if event.type == "m.room.member" and event.state_key == user_id:
            membership = str(event.content.get("membership"))
        found[event.event_id] = membership
    return found


def _members(events: list[Event]) -> dict[str, str]:
    """The member events among `events`, as user id -> event id."""
    return {e.state_key: e.event_id for e in events if e.type == "m.room.member" and e.state_key is not None}


def _state_delta(room: Room, first: int, shown: list[Event], since: int | None) -> list[Event]:
    """Synapse's state section: the state as of the first timeline event (after it) and the current state,
    less what the client had at `since` and what the timeline shows. An initial sync whose timeline holds the
    whole room has none [1.4]; one filtered down to messages has the whole state [1.46]; a gappy incremental
    one has what changed in the gap [1.62]; the first timeline event's own change is not repeated."""
    start = room.state_before(first + 1 if shown else len(room.timeline))
    had = {e.event_id for e in room.state_before(room.index_after(since))} if since is not None else set()
    hidden = had | {e.event_id for e in shown}
    found = {e.event_id: e for e in (*start, *room.state.values()) if e.event_id not in hidden}
    return list(found.values())


class _Counted(NamedTuple):
    read_at: int  # the timeline index of the user's read point (their join or latest read receipt)
    pattern: str  # what highlights the user
    upto: int  # the timeline index counted up to (exclusive)
    notifications: int
    highlights: int


class Sync:
    """The answers of /sync."""

    def __init__(self, ids: Ids, rooms: Rooms, ephemeral: Ephemeral, presence: Presence) -> None:
        self._ids = ids
        self._rooms = rooms
        self._ephemeral = ephemeral
        self._presence = presence
        # (user, device) -> the member events lazy loading has sent that device, user id -> event id: what it
        # leaves out next time (Synapse's lazy-loaded members cache; an initial sync starts it afresh).
        self._lazy_sent: dict[tuple[str, str | None], dict[str, str]] = {}
        # user id -> the furthest stream position a /sync answer has given them (what a test waits for).
        self.synced: dict[str, int] = {}
        # (room id, user id) -> the unread counts of the last sync, and up to where they counted.
        self._unread_counts: dict[tuple[str, str], _Counted] = {}
        # Whose device the sync being answered is for (its own sends carry their transaction ids).
        self._device: tuple[str, str | None] = ("", None)

    # -- sync

    @property
    def position(self) -> int:
        return self._ids.stream

    def sync(
        self,
        requester: User,
        since: str | None,
        sync_filter: SyncFilter,
        *,
        full_state: bool = False,
        presence: str | None = None,
        device_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The answer, and whether it has anything for the user (an incremental sync without anything waits).
        Initial syncs (and full_state) always count as something."""
        user_id = requester.user_id
        self._presence.set_from_sync(user_id, presence)
        current = self._ids.stream
        position = None if since is None else parse_since(since, current)
        now = self._ids.now_ms()
        self._device = (user_id, device_id)
        if position is None and sync_filter.lazy_load_members and not sync_filter.include_redundant_members:
            self._lazy_sent.pop((user_id, device_id), None)  # a new sync sequence: the client has forgotten
        answer: dict[str, Any] = {
            "next_batch": token(current),
            "device_one_time_keys_count": {"signed_curve25519": 0},
            "device_unused_fallback_key_types": [],
        }
        join: dict[str, Any] = {}
        invite: dict[str, Any] = {}
        leave: dict[str, Any] = {}
        for room in self._rooms.rooms_of(user_id):
            membership = room.membership(user_id)
            if membership is None:
                continue
            member = room.state[("m.room.member", user_id)]
            listed = full_state and membership == "join"
            if not listed and not sync_filter.wants_room(room.room_id):
                continue
            if membership == "join":
                if (
                    position is not None
                    and not full_state
                    and self._nothing_since(room, user_id, member, position)
                ):
                    continue
                entry = self._joined(room, user_id, position, sync_filter, now, full_state, current)
                if entry is not None:
                    join[room.room_id] = entry
            elif membership == "invite":
                if position is None or member.stream > position:
                    invite[room.room_id] = {"invite_state": {"events": self._invite_state(room, member)}}
            elif membership in ("leave", "ban"):
                left = self._left(room, user_id, member, position, sync_filter, now)
                if left is not None:
                    leave[room.room_id] = left
        rooms = {
            name: section
            for name, section in (("join", join), ("invite", invite), ("leave", leave))
            if section
        }
        if rooms:
            answer["rooms"] = rooms
        if position is None:
            answer["account_data"] = {
                "events": [{"type": "m.push_rules", "content": copy.deepcopy(DEFAULT_PUSH_RULES)}]
            }
        presence_events = self._presence.for_sync(user_id, position) if sync_filter.presence else []
        if presence_events:
            answer["presence"] = {"events": presence_events}
        has_news = position is None or full_state or bool(rooms) or bool(presence_events)
        if has_news:
            self.synced[user_id] = max(self.synced.get(user_id, 0), current)
        else:
            # Nothing new: the answer carries the caller's own token back, byte for byte [1.14, 1.16].
            answer["next_batch"] = since
        return answer, has_news

    def _nothing_since(self, room: Room, user_id: str, member: Event, position: int) -> bool:
        """Whether an incremental sync has certainly nothing of a joined room (what `_joined` would find,
        for a fraction of its cost: most of a user's rooms are quiet): no event after `position`, the
        membership older, no typing change, receipt or room account data since, and no typing notice that
        reading could expire (an expiry is news)."""
        if member.stream > position or (room.timeline and room.timeline[-1].stream > position):
            return False
        ephemeral = self._ephemeral.by_room.get(room.room_id)
        if ephemeral is not None and (
            ephemeral.typing
            or ephemeral.typing_stream > position
            or any(receipt.stream > position for receipt in ephemeral.receipts.values())
        ):
            return False
        data = self._ephemeral.account_data.get((user_id, room.room_id), {})
        return all(entry.stream <= position for entry in data.values())

    def _format(self, event: Event, now: int, membership: str | None) -> dict[str, Any]:
        unsigned: dict[str, Any] = {"age": max(0, now - event.origin_server_ts)}
        if membership is not None:
            unsigned["membership"] = membership
        if event.replaces_state:
            unsigned["replaces_state"] = event.replaces_state
        user_id, device_id = self._device
        if event.transaction is not None and event.sender == user_id and event.transaction[0] == device_id:
            unsigned["transaction_id"] = event.transaction[1]  # only to the sending device [1.85, 1.86]
        formatted: dict[str, Any] = {
            "content": copy.deepcopy(event.content),
            "event_id": event.event_id,
            "origin_server_ts": event.origin_server_ts,
            "sender": event.sender,
            "type": event.type,
            "unsigned": unsigned,
        }
        if event.state_key is not None:
            formatted["state_key"] = event.state_key
        if event.type == "m.room.create" and ":" not in event.room_id:
            formatted["room_id"] = event.room_id  # room version 12's create event keeps it [1.4]
        return formatted

    def _timeline(
        self,
        room: Room,
        user_id: str,
        start: int,
        end: int,
        sync_filter: SyncFilter,
        now: int,
    ) -> tuple[list[dict[str, Any]], bool, int, list[Event]]:
        """The timeline of room.timeline[start:end] under the filter and the user's history visibility: the
        events, limited, the index of the first one shown, and the events shown."""
        if start >= end:
            return [], False, end, []  # nothing in the window (most rooms of a sync): no visibility walk
        member = room.state.get(("m.room.member", user_id))
        if (
            member is not None
            and member.content.get("membership") == "join"
            and room.positions[member.event_id] < start
        ):
            # Joined before the window and since: a member through all of it, who sees every event of it;
            # the walks over the whole room below would find just that.
            seen: dict[str, bool] | None = None
            memberships: dict[str, str] | None = None
        else:
            seen = visible(room, user_id)
            memberships = _membership_after(room, user_id, end)
        window = [
            (i, e)
            for i, e in enumerate(room.timeline[start:end], start)
            if sync_filter.wants(e) and (seen is None or seen[e.event_id])
        ]
        shown = window[max(0, len(window) - sync_filter.limit) :] if sync_filter.limit else []
        limited = len(shown) < len(window)
        first = shown[0][0] if shown else end
        events = [
            self._format(event, now, "join" if memberships is None else memberships.get(event.event_id))
            for _, event in shown
        ]
        return events, limited, first, [event for _, event in shown]

    def _joined(
        self,
        room: Room,
        user_id: str,
        position: int | None,
        sync_filter: SyncFilter,
        now: int,
        full_state: bool,
        current: int,
    ) -> dict[str, Any] | None:
        timeline = room.timeline
        member = room.state[("m.room.member", user_id)]
        newly_joined = (
            position is not None
            and member.stream > position
            and not any(
                e.type == "m.room.member"
                and e.state_key == user_id
                and e.stream <= position
                and e.content.get("membership") == "join"
                for e in timeline
            )
        )
        start = 0 if position is None or newly_joined else room.index_after(position)
        events, limited, first, shown = self._timeline(room, user_id, start, len(timeline), sync_filter, now)
        ephemeral = self._ephemeral_events(room.room_id, user_id, position)
        account_data = self._account_data(user_id, room.room_id, position)
        quiet = not events and not ephemeral and not account_data
        if position is not None and not newly_joined and not full_state and quiet:
            return None
        whole = full_state or position is None or newly_joined
        if whole or limited:
            state_events = _state_delta(room, first, shown, None if whole else position)
            limited = limited or newly_joined
        else:
            state_events = []  # what changed is in the timeline [1.15]
        summary: dict[str, Any] = {}
        if sync_filter.lazy_load_members:
            state_events = self._lazy_members(
                room, user_id, state_events, shown, first, whole=whole, sync_filter=sync_filter
            )
            if (
                position is None
                or any(e.type == "m.room.member" for e in shown)
                or (limited and any(e.type == "m.room.member" for e in state_events))
            ):
                summary = self._summary(room, user_id, state_events, shown)
        state = [self._format(e, now, None) for e in state_events]
        if limited or (position is not None and events):
            prev_batch = token(timeline[first].stream - 1) if first < len(timeline) else token(current)
        elif position is None:
            prev_batch = token(
                current
            )  # Synapse: an initial sync that fits has prev_batch == next_batch [1.4]
        else:
            prev_batch = token(position)  # no events: the since token [6.2]
        return {
            "timeline": {"events": events, "prev_batch": prev_batch, "limited": limited},
            "state": {"events": state},
            "account_data": {"events": account_data},
            "ephemeral": {"events": ephemeral},
            "unread_notifications": self._unread(room, user_id),
            "summary": summary,
        }

    def _lazy_members(
        self,
        room: Room,
        user_id: str,
        state: list[Event],
        shown: list[Event],
        first: int,
        *,
        whole: bool,
        sync_filter: SyncFilter,
    ) -> list[Event]:
        """`lazy_load_members`: of the member events, only the timeline senders' (and, for a sync of the
        whole room, the user's own) as of the first timeline event, even when it is in the timeline; then,
        unless `include_redundant_members`, none this device was sent before [issue 13 lazy probes]."""
        senders = {e.sender for e in shown} | ({user_id} if whole else set())
        upto = first + 1 if shown else len(room.timeline)
        at_start = {(e.type, e.state_key): e for e in room.state_before(upto)}
        members = [
            at_start[("m.room.member", sender)]
            for sender in sorted(senders)
            if ("m.room.member", sender) in at_start
        ]
        picked = [e for e in state if e.type != "m.room.member"] + members
        if sync_filter.include_redundant_members:
            return picked
        sent = self._lazy_sent.setdefault((user_id, self._device[1]), {})
        picked = [e for e in picked if e.type != "m.room.member" or sent.get(str(e.state_key)) != e.event_id]
        sent.update(_members(picked))
        sent.update(_members(shown))
        return picked

    def _summary(self, room: Room, user_id: str, state: list[Event], shown: list[Event]) -> dict[str, Any]:
        """The room summary lazy loading asks for: member counts, and for a room without a name or alias up to
        5 heroes (other joined or invited members by id, else those gone), whose member events join `state`
        if the client has them from nowhere [1.60, issue 13 lazy probes]."""
        members = room.members()
        summary: dict[str, Any] = {
            "m.joined_member_count": sum(1 for m in members.values() if m == "join"),
            "m.invited_member_count": sum(1 for m in members.values() if m == "invite"),
        }
        if room.content("m.room.name").get("name") or room.content("m.room.canonical_alias").get("alias"):
            return summary
        present = sorted(u for u, m in members.items() if m in ("join", "invite") and u != user_id)
        gone = sorted(u for u, m in members.items() if m in ("leave", "ban") and u != user_id)
        heroes = (present or gone)[:5]
        summary["m.heroes"] = heroes
        known = set(_members(state)) | set(_members(shown))
        sent = self._lazy_sent.setdefault((user_id, self._device[1]), {})
        for hero in heroes:
            event = room.state[("m.room.member", hero)]
            if hero not in known and sent.get(hero) != event.event_id:
                state.append(event)
                sent[hero] = event.event_id
        return summary

    def _unread(self, room: Room, user_id: str) -> dict[str, int]:
        """Messages from others after the user's join and latest read receipt that notify under the default
        push rules (every m.room.message but an m.notice); highlights mention the user's id or room name
        [1.78, 1.79, 1.82, 1.83]."""
        member = room.state[("m.room.member", user_id)]
        read_at = room.positions.get(member.event_id, -1)
        for key, receipt in self._ephemeral.receipts(room.room_id).items():
            if key.user_id == user_id and key.receipt_type in ("m.read", "m.read.private"):
                read_at = max(read_at, room.positions.get(receipt.event_id, -1))
        name = member.content.get("displayname")
        mentions = [re.escape(user_id)] + (
            [rf"\b{re.escape(name)}\b"] if isinstance(name, str) and name else []
        )
        pattern = "|".join(mentions)
        # Counted before from the same read point with the same name: only the events since need counting.
        counted = self._unread_counts.get((room.room_id, user_id))
        if counted is not None and counted.read_at == read_at and counted.pattern == pattern:
            upto, notifications, highlights = counted.upto, counted.notifications, counted.highlights
        else:
            upto, notifications, highlights = read_at + 1, 0, 0
        mentioned = re.compile(pattern, re.IGNORECASE)
        for event in room.timeline[upto:]:
            if event.type != "m.room.message" or event.sender == user_id:
                continue
            if event.content.get("msgtype") == "m.notice":
                continue
            notifications += 1
            if mentioned.search(str(event.content.get("body", ""))):
                highlights += 1
        self._unread_counts[(room.room_id, user_id)] = _Counted(
            read_at, pattern, len(room.timeline), notifications, highlights
        )
        return {"notification_count": notifications, "highlight_count": highlights}

    def _account_data(self, user_id: str, room_id: str, position: int | None) -> list[dict[str, Any]]:
        """The room account data set after `position` (all of it for an initial sync)."""
        return [
            {"type": kind, "content": copy.deepcopy(data.content)}
            for kind, data in self._ephemeral.account_data.get((user_id, room_id), {}).items()
            if position is None or data.stream > position
        ]

    def _ephemeral_events(self, room_id: str, user_id: str, position: int | None) -> list[dict[str, Any]]:
        state = self._ephemeral.by_room.get(room_id)
        if state is None:
            return []
        events: list[dict[str, Any]] = []
        typing = self._ephemeral.typing_users(room_id)
        if (position is None and typing) or (position is not None and state.typing_stream > position):
            events.append({"type": "m.typing", "content": {"user_ids": typing}})
        receipts: dict[str, Any] = {}
        for key, receipt in state.receipts.items():
            if position is not None and receipt.stream <= position:
                continue
            if key.receipt_type == "m.read.private" and key.user_id != user_id:
                continue
            entry: dict[str, Any] = {"ts": receipt.ts}
            if key.thread_id is not None:
                entry["thread_id"] = key.thread_id
            receipts.setdefault(receipt.event_id, {}).setdefault(key.receipt_type, {})[key.user_id] = entry
        if receipts:
            events.append({"type": "m.receipt", "content": receipts})
        return events

    def _invite_state(self, room: Room, member: Event) -> list[dict[str, Any]]:
        """Stripped state: the prejoin state types, the inviter's member event, the invite last [1.67]."""
        stripped = [room.state[(kind, "")] for kind in _INVITE_STATE if (kind, "") in room.state]
        inviter = room.state.get(("m.room.member", member.sender))
        if inviter is not None and inviter is not member:
            stripped.append(inviter)
        stripped.append(member)
        return [
            {
                "content": copy.deepcopy(e.content),
                "sender": e.sender,
                "state_key": e.state_key,
                "type": e.type,
            }
            for e in stripped
        ]

    def _left(
        self,
        room: Room,
        user_id: str,
        member: Event,
        position: int | None,
        sync_filter: SyncFilter,
        now: int,
    ) -> dict[str, Any] | None:
        """A room left (or rejected, or kicked from): once, in the sync covering the leave [1.69-1.71];
        in an initial sync only with include_leave, with the room's visible history up to the leave (the
        last `limit` events, and then the state before them) [1.73, corpus `visibility: ...`]."""
        if position is None:
            if not sync_filter.include_leave:
                return None
        elif member.stream <= position:
            return None
        end = room.positions[member.event_id] + 1
        start = 0 if position is None else end - 1
        events, limited, first, _ = self._timeline(room, user_id, start, end, sync_filter, now)
        state = [self._format(e, now, None) for e in room.state_before(first)] if limited else []
        prev_batch = token(room.timeline[first].stream - 1) if limited else token(member.stream)
        return {
            "timeline": {"events": events, "prev_batch": prev_batch, "limited": limited},
            "state": {"events": state},
            "account_data": {"events": []},
        }
