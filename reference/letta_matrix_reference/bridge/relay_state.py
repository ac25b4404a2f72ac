"""What the relay remembers across restarts, in `relay.journal` beside the mapping: the sync token of the
last batch handled whole, the ids of the events it handled (the newest `HANDLED_LIMIT`), and its outbox,
the replies of turns Letta answered that are not all posted yet.

The order of writes is what makes the relay exactly-once: a turn's replies are saved before the first is
posted (a restart posts them again, under the same transaction ids, instead of asking Letta again), the
event is marked handled once they are all posted, and the token moves past a batch only after every event
in it is handled.

The file is a journal: a snapshot of the whole state, then one record per save with what changed since
the last (new outbox entries, new handled marks, the token), appended and made durable with one
`fdatasync`. Replacing a whole file costs two device flushes and a rename (measured on this machine's
ext4: 3 to 4 times an append's), and grows with the handled ids. Each record is one line with its CRC-32:
a crash mid-append leaves a torn record at the end, and loading stops at the first record that is not
whole, so a record applies entirely or not at all. Nothing after a torn record was ever acknowledged (a
later `fdatasync` would have made it whole), so dropping it loses nothing the relay acted on. When the
appended records outgrow the snapshot, the journal is rewritten as one new snapshot, atomically like the
mapping."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from letta_matrix_reference.bridge.errors import StoreError
from letta_matrix_reference.bridge.store import write_atomically

log = logging.getLogger(__name__)

RELAY_FILE = "relay.journal"
RELAY_VERSION = 2
# The state before the journal (version 1: the same fields in one JSON file), taken over once.
OLD_RELAY_FILE = "relay.json"
# Enough for every event a restart could meet again (a batch, and then some).
HANDLED_LIMIT = 5000
# Appended bytes beyond the snapshot's own size before the journal is rewritten as one snapshot: rewrites
# cost at most about what the appends did, and a journal stays within a few times its state.
COMPACT_SLACK = 64 * 1024


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
    handled: deque[str] = field(default_factory=lambda: deque(maxlen=HANDLED_LIMIT))
    outbox: dict[str, Pending] = field(default_factory=dict)
    marks: int = 0  # handled marks made so far (the deque forgets the oldest; the journal needs the newest)

    def is_handled(self, event_id: str) -> bool:
        return event_id in self.handled

    def mark_handled(self, event_id: str) -> None:
        self.outbox.pop(event_id, None)
        if event_id not in self.handled:
            self.handled.append(event_id)
            self.marks += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RELAY_VERSION,
            "since": self.since,
            "handled": list(self.handled),
            "outbox": {event_id: pending.to_json() for event_id, pending in self.outbox.items()},
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> RelayState:
        if not isinstance(data, dict) or data.get("version") != RELAY_VERSION:
            raise StoreError(f"{where} is not a relay state of version {RELAY_VERSION}")
        change = Change.from_json(data, where)
        if not isinstance(data.get("handled"), list) or not isinstance(data.get("outbox"), dict):
            raise StoreError(f"{where} must have handled and outbox")
        state = cls(since=change.since)
        change.apply(state)
        return state


@dataclass
class Change:
    """One journal record: outbox entries added or updated, events handled (each leaves the outbox), and
    the token, applied in that order."""

    outbox: dict[str, Pending] = field(default_factory=dict)
    handled: list[str] = field(default_factory=list)
    since: str | None = None
    moves_token: bool = False

    def __bool__(self) -> bool:
        return bool(self.outbox or self.handled or self.moves_token)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.outbox:
            data["outbox"] = {event_id: pending.to_json() for event_id, pending in self.outbox.items()}
        if self.handled:
            data["handled"] = self.handled
        if self.moves_token:
            data["since"] = self.since
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> Change:
        """Checked whole before anything is applied: a record applies entirely or not at all."""
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


def _encode(record: dict[str, Any]) -> bytes:
    # json.dumps escapes newlines inside strings: a record is always one line.
    payload = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _decode(line: bytes) -> Any:
    """The record in one line (without its newline), or None when it is not whole (torn, zeroed)."""
    checksum, _, payload = line.partition(b" ")
    try:
        if len(checksum) != 8 or int(checksum, 16) != zlib.crc32(payload):
            return None
        return json.loads(payload)
    except ValueError:
        return None


class RelayStore:
    """Loads and saves one relay state. `save()` returns once a write that includes every change made
    before the call is on disk (nothing is written when nothing changed); callers that ask while a write
    runs share the next one (group commit)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RELAY_FILE
        self.state = RelayState()
        self.writes = 0
        self._asked = 0
        self._written = 0
        self._lock = asyncio.Lock()
        self._journal: int | None = None  # the descriptor appends go to, opened at the first append
        self._snapshot_bytes = 0
        self._appended_bytes = 0
        self._exists = False  # the journal is on disk (else the first write makes it, a snapshot)
        self._rewrite = False  # a write failed: the next save is a snapshot, changed or not
        self._saved = self._saved_marks()

    def _saved_marks(self) -> tuple[str | None, int, dict[str, int]]:
        state = self.state
        return state.since, state.marks, {event_id: p.refused for event_id, p in state.outbox.items()}

    def load(self) -> RelayState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return self._take_over_version_1()
        except OSError as exc:
            raise StoreError(f"cannot read the relay state {self.path}: {exc}") from exc
        state: RelayState | None = None
        whole = 0
        for number, line in enumerate(raw.split(b"\n")[:-1], 1):  # the part after the last newline is torn
            record = _decode(line)
            if record is None:
                break
            where = f"{self.path} record {number}"
            if state is None:
                # Never started over: a fresh state would relay every message in the rooms' history again.
                if not isinstance(record, dict) or "snapshot" not in record:
                    raise StoreError(f"{where} is not a relay state snapshot; fix or remove the file")
                state = RelayState.from_json(record["snapshot"], where)
                self._snapshot_bytes = len(line) + 1
            else:
                Change.from_json(record, where).apply(state)
            whole += len(line) + 1
        if state is None:
            raise StoreError(f"{self.path} has no whole snapshot; fix or remove it")
        if whole < len(raw):
            # The end of an append a crash cut short: never acknowledged, so nothing acted on it.
            log.warning("relay state %s: ignoring %d bytes of a torn last write", self.path, len(raw) - whole)
            try:
                os.truncate(self.path, whole)  # later appends must follow the last whole record
            except OSError as exc:
                raise StoreError(f"cannot cut the torn end of {self.path}: {exc}") from exc
        self.state = state
        self._appended_bytes = whole - self._snapshot_bytes
        self._exists = True
        self._saved = self._saved_marks()
        return state

    def _take_over_version_1(self) -> RelayState:
        """A relay that saved its state before the journal: that state becomes the journal's snapshot (a
        fresh state would answer the rooms' recent history again)."""
        old = self.path.with_name(OLD_RELAY_FILE)
        try:
            data = json.loads(old.read_bytes())
        except FileNotFoundError:
            return self.state
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the relay state {old}: {exc}; fix or remove it") from exc
        if not isinstance(data, dict) or data.get("version") != 1:
            raise StoreError(f"{old} is not a relay state of version 1; fix or remove it")
        self.state = RelayState.from_json({**data, "version": RELAY_VERSION}, str(old))
        self._write_snapshot(_encode({"snapshot": self.state.to_json()}))
        self._saved = self._saved_marks()
        old.unlink()  # only once the journal holds it
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
            if not change and not self._rewrite:
                self._written = covers
                return
            saved = self._saved_marks()
            if (
                self._rewrite
                or not self._exists
                or self._appended_bytes > self._snapshot_bytes + COMPACT_SLACK
            ):
                data, write = _encode({"snapshot": self.state.to_json()}), self._write_snapshot
            else:
                data, write = _encode(change.to_json()), self._append
            # A thread cannot be stopped: a cancelled save still waits for its write (and keeps the lock),
            # so an older write can never land after a newer one.
            writing = asyncio.ensure_future(asyncio.to_thread(write, data))
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                while not writing.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([writing])
                raise
            finally:
                if not writing.done() or writing.cancelled() or writing.exception() is not None:
                    # What it held is not on disk, and the next change will not repeat it: write it all.
                    self._rewrite = True
            self._saved = saved
            self.writes += 1
            self._written = covers

    def _write_snapshot(self, data: bytes) -> None:
        self._close_journal()
        write_atomically(self.path, data, "the relay state")
        self._snapshot_bytes, self._appended_bytes = len(data), 0
        self._exists, self._rewrite = True, False

    def _append(self, data: bytes) -> None:
        try:
            if self._journal is None:
                self._journal = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            written = 0
            while written < len(data):
                written += os.write(self._journal, data[written:])
            os.fdatasync(self._journal)
        except OSError as exc:
            # A record written in part would hide every later one from the next load: the next save writes
            # a new file (`save` sees the failure).
            raise StoreError(f"cannot append to the relay state {self.path}: {exc}") from exc
        self._appended_bytes += len(data)

    def _close_journal(self) -> None:
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None

    async def close(self) -> None:
        """Close the journal (once a write under way is done); a later save opens it again."""
        async with self._lock:
            self._close_journal()
