"""What the relay remembers across restarts, in `relay.sqlite3` beside the mapping: the sync token of the
last batch handled whole, the ids of the events it handled (the newest `HANDLED_LIMIT`), and its outbox,
the replies of turns Letta answered that are not all posted yet.

The order of writes is what makes the relay exactly-once: a turn's replies are saved before the first is
posted (a restart posts them again, under the same transaction ids, instead of asking Letta again), the
event is marked handled once they are all posted, and the token moves past a batch only after every event
in it is handled.

The store is SQLite (the standard library's `sqlite3`): one transaction per save with what changed since
the last (outbox entries, handled marks, the token), in WAL mode with `synchronous=FULL`, so a save is
whole or absent after a crash and costs one device flush. A file replaced whole would cost two flushes and
a rename (measured on this machine's ext4: 3 to 4 times an append's) and grow with the handled ids."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from letta_matrix_reference.bridge.errors import StoreError

log = logging.getLogger(__name__)

RELAY_FILE = "relay.sqlite3"
RELAY_VERSION = 2  # the database's user_version
# The state before SQLite (version 1: the same fields in one JSON file), taken over once.
OLD_RELAY_FILE = "relay.json"
# Enough for every event a restart could meet again (a batch, and then some).
HANDLED_LIMIT = 5000
SCHEMA = """
CREATE TABLE IF NOT EXISTS token (id INTEGER PRIMARY KEY CHECK (id = 0), since TEXT);
CREATE TABLE IF NOT EXISTS handled (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS outbox (event_id TEXT PRIMARY KEY, pending TEXT NOT NULL);
"""
_PUT_PENDING = "INSERT OR REPLACE INTO outbox (event_id, pending) VALUES (?, ?)"
_DROP_PENDING = "DELETE FROM outbox WHERE event_id = ?"
_MARK_HANDLED = "INSERT OR IGNORE INTO handled (event_id) VALUES (?)"
_FORGET_OLDEST = "DELETE FROM handled WHERE seq <= (SELECT MAX(seq) FROM handled) - ?"
_PUT_TOKEN = "INSERT OR REPLACE INTO token (id, since) VALUES (0, ?)"
_NEWEST_HANDLED = (
    "SELECT event_id FROM (SELECT seq, event_id FROM handled ORDER BY seq DESC LIMIT ?) ORDER BY seq"
)


@dataclass
class Pending:
    """A turn Letta answered: where its replies go, who sends them, and what they are (message contents)."""

    room_id: str
    agent_id: str
    replies: list[dict[str, Any]]
    refused: int = 0  # runs in which the homeserver refused (4xx) to take a reply

    def to_json(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "agent_id": self.agent_id,
            "replies": self.replies,
            "refused": self.refused,
        }

    @classmethod
    def from_json(cls, item: Any, where: str) -> Pending:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("room_id"), str)
            or not isinstance(item.get("agent_id"), str)
            or not isinstance(item.get("replies"), list)
            or not all(isinstance(reply, dict) for reply in item["replies"])
        ):
            raise StoreError(f"{where} must have room_id, agent_id and replies")
        refused = item.get("refused", 0)
        if not isinstance(refused, int) or isinstance(refused, bool):
            raise StoreError(f"{where}.refused must be a whole number")
        return cls(item["room_id"], item["agent_id"], list(item["replies"]), refused)


@dataclass
class RelayState:
    since: str | None = None
    # The newest `HANDLED_LIMIT` handled ids, oldest first: an ordered set (a dict's keys), so that the
    # check every incoming event gets is a lookup, not a walk through thousands of ids.
    handled: dict[str, None] = field(default_factory=dict)
    outbox: dict[str, Pending] = field(default_factory=dict)
    marks: int = 0  # handled marks made so far (the oldest are forgotten; a save needs the newest)

    def is_handled(self, event_id: str) -> bool:
        return event_id in self.handled

    def mark_handled(self, event_id: str) -> None:
        self.outbox.pop(event_id, None)
        if event_id not in self.handled:
            self.handled[event_id] = None
            self.marks += 1
            if len(self.handled) > HANDLED_LIMIT:
                del self.handled[next(iter(self.handled))]

    @classmethod
    def from_version_1(cls, data: Any, where: str) -> RelayState:
        """The state a relay kept in `relay.json` before SQLite."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise StoreError(f"{where} is not a relay state of version 1; fix or remove it")
        change = Change.from_json(data, where)
        if not isinstance(data.get("handled"), list) or not isinstance(data.get("outbox"), dict):
            raise StoreError(f"{where} must have handled and outbox")
        state = cls(since=change.since)
        change.apply(state)
        return state


@dataclass
class Change:
    """One save: outbox entries added or updated, events handled (each leaves the outbox), and
    the token, applied in that order."""

    outbox: dict[str, Pending] = field(default_factory=dict)
    handled: list[str] = field(default_factory=list)
    since: str | None = None
    moves_token: bool = False

    def __bool__(self) -> bool:
        return bool(self.outbox or self.handled or self.moves_token)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Change:
        """Checked whole before anything is applied."""
        if not isinstance(data, dict):
            raise StoreError(f"{where} must be an object")
        since, handled, outbox = data.get("since"), data.get("handled", []), data.get("outbox", {})
        if since is not None and not isinstance(since, str):
            raise StoreError(f"{where}.since must be a string or null")
        if not isinstance(handled, list) or not all(isinstance(item, str) for item in handled):
            raise StoreError(f"{where}.handled must be a list of event ids")
        if not isinstance(outbox, dict):
            raise StoreError(f"{where}.outbox must be an object")
        pending = {
            event_id: Pending.from_json(item, f"{where}.outbox[{event_id!r}]")
            for event_id, item in outbox.items()
        }
        return cls(pending, handled, since, "since" in data)

    def apply(self, state: RelayState) -> None:
        state.outbox.update(self.outbox)
        for event_id in self.handled:
            state.mark_handled(event_id)
        if self.moves_token:
            state.since = self.since


class RelayStore:
    """Loads and saves one relay state. `save()` returns once a transaction that includes every change made
    before the call is committed (nothing is written when nothing changed); callers that ask while a write
    runs share the next one (group commit)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RELAY_FILE
        self.state = RelayState()
        self.writes = 0
        self._asked = 0
        self._written = 0
        self._lock = asyncio.Lock()
        self._db: sqlite3.Connection | None = None
        self._saved = self._saved_marks()

    def _saved_marks(self) -> tuple[str | None, int, dict[str, int]]:
        state = self.state
        return state.since, state.marks, {event_id: p.refused for event_id, p in state.outbox.items()}

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                # Created 0600 before SQLite opens it (its -wal and -shm files take the same mode): the
                # outbox holds what agents said.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
                # One connection, used by one thread at a time (the lock), whichever it is.
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, RELAY_VERSION):
                    db.close()
                    raise StoreError(
                        f"{self.path} is a relay state of version {version}, not {RELAY_VERSION}"
                    )
                db.executescript(SCHEMA)
                db.execute(f"PRAGMA user_version={RELAY_VERSION}")
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open the relay state {self.path}: {exc}") from exc
            self._db = db
        return self._db

    def load(self) -> RelayState:
        if not self.path.exists():
            return self._take_over_version_1()  # the database is made by the first write
        db = self._connect()
        try:
            token = db.execute("SELECT since FROM token").fetchone()
            handled = db.execute(_NEWEST_HANDLED, (HANDLED_LIMIT,)).fetchall()
            outbox = db.execute("SELECT event_id, pending FROM outbox ORDER BY rowid").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the relay state {self.path}: {exc}") from exc
        state = RelayState(since=token[0] if token else None)
        for (event_id,) in handled:
            state.mark_handled(event_id)
        for event_id, pending in outbox:
            try:
                state.outbox[event_id] = Pending.from_json(
                    json.loads(pending), f"{self.path} outbox {event_id!r}"
                )
            except ValueError as exc:
                raise StoreError(f"{self.path} outbox {event_id!r} is not JSON: {exc}") from exc
        self.state = state
        self._saved = self._saved_marks()
        return state

    def _take_over_version_1(self) -> RelayState:
        """A relay that saved its state before SQLite: that state is written into the database (a fresh
        state would answer the rooms' recent history again), then the old file is removed."""
        old = self.path.with_name(OLD_RELAY_FILE)
        try:
            data = json.loads(old.read_bytes())
        except FileNotFoundError:
            return self.state
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the relay state {old}: {exc}; fix or remove it") from exc
        self.state = RelayState.from_version_1(data, str(old))
        self._saved = (None, 0, {})  # everything is a change: all of it is written
        self._write(self._change())
        self._saved = self._saved_marks()
        old.unlink()  # only once the database holds it
        log.info("relay state %s taken over into %s", old, self.path)
        return self.state

    def _change(self) -> Change:
        """What changed since the last save."""
        state = self.state
        since, marks, outbox = self._saved
        new_marks = state.marks - marks
        return Change(
            outbox={
                event_id: pending
                for event_id, pending in state.outbox.items()
                if outbox.get(event_id) != pending.refused
            },
            handled=list(itertools.islice(reversed(state.handled), new_marks))[::-1],
            since=state.since,
            moves_token=state.since != since,
        )

    async def save(self) -> None:
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            if self._written >= ticket:
                return
            covers = self._asked
            change = self._change()
            if not change:
                self._written = covers
                return
            saved = self._saved_marks()
            # A thread cannot be stopped: a cancelled save still waits for its transaction (and keeps the
            # lock), so an older write can never land after a newer one.
            writing = asyncio.ensure_future(asyncio.to_thread(self._write, change))
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                # Not counted even if it committed: the next save writes the same change again, which
                # changes nothing (each statement is an upsert).
                while not writing.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([writing])
                raise
            self._saved = saved
            self.writes += 1
            self._written = covers

    def _write(self, change: Change) -> None:
        """One transaction: whole or absent after a crash; a failed one leaves the last save as it was (the
        next save writes its changes again, since `_saved` did not move)."""
        db = self._connect()
        outbox = [
            (event_id, json.dumps(p.to_json(), ensure_ascii=False)) for event_id, p in change.outbox.items()
        ]
        handled = [(event_id,) for event_id in change.handled]
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_PUT_PENDING, outbox)
                db.executemany(_DROP_PENDING, handled)
                db.executemany(_MARK_HANDLED, handled)
                if handled:
                    db.execute(_FORGET_OLDEST, (HANDLED_LIMIT,))
                if change.moves_token:
                    db.execute(_PUT_TOKEN, (change.since,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the relay state {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close the database (once a write under way is done); a later save opens it again."""
        async with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
