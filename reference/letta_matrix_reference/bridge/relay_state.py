"""What the relay remembers across restarts, in `relay.json` beside the mapping: the sync token of the last
batch handled whole, the ids of the events it handled (the newest `HANDLED_LIMIT`), and its outbox, the
replies of turns Letta answered that are not all posted yet.

The order of writes is what makes the relay exactly-once: a turn's replies are saved before the first is
posted (a restart posts them again, under the same transaction ids, instead of asking Letta again), the
event is marked handled once they are all posted, and the token moves past a batch only after every event
in it is handled. The file is replaced atomically, like the mapping."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from letta_matrix_reference.bridge.errors import StoreError
from letta_matrix_reference.bridge.store import write_atomically

RELAY_FILE = "relay.json"
RELAY_VERSION = 1
# Enough for every event a restart could meet again (a batch, and then some), small enough to rewrite.
HANDLED_LIMIT = 5000


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


@dataclass
class RelayState:
    since: str | None = None
    handled: deque[str] = field(default_factory=lambda: deque(maxlen=HANDLED_LIMIT))
    outbox: dict[str, Pending] = field(default_factory=dict)

    def is_handled(self, event_id: str) -> bool:
        return event_id in self.handled

    def mark_handled(self, event_id: str) -> None:
        self.outbox.pop(event_id, None)
        if event_id not in self.handled:
            self.handled.append(event_id)

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
        since, handled, outbox = data.get("since"), data.get("handled"), data.get("outbox")
        if since is not None and not isinstance(since, str):
            raise StoreError(f"{where}.since must be a string or null")
        if not isinstance(handled, list) or not all(isinstance(item, str) for item in handled):
            raise StoreError(f"{where}.handled must be a list of event ids")
        if not isinstance(outbox, dict):
            raise StoreError(f"{where}.outbox must be an object")
        state = cls(since=since, handled=deque(handled, maxlen=HANDLED_LIMIT))
        for event_id, item in outbox.items():
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("room_id"), str)
                or not isinstance(item.get("agent_id"), str)
                or not isinstance(item.get("replies"), list)
                or not all(isinstance(reply, dict) for reply in item["replies"])
            ):
                raise StoreError(f"{where}.outbox[{event_id!r}] must have room_id, agent_id and replies")
            refused = item.get("refused", 0)
            if not isinstance(refused, int) or isinstance(refused, bool):
                raise StoreError(f"{where}.outbox[{event_id!r}].refused must be a whole number")
            state.outbox[event_id] = Pending(
                item["room_id"], item["agent_id"], list(item["replies"]), refused
            )
        return state


class RelayStore:
    """Loads and saves one relay state. `save()` returns once a write that includes every change made
    before the call is on disk; callers that ask while a write runs share the next one (group commit)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RELAY_FILE
        self.state = RelayState()
        self.writes = 0
        self._asked = 0
        self._written = 0
        self._lock = asyncio.Lock()

    def load(self) -> RelayState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return self.state
        except OSError as exc:
            raise StoreError(f"cannot read the relay state {self.path}: {exc}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            # Never started over: a fresh state would relay every message in the rooms' recent history again.
            raise StoreError(
                f"the relay state {self.path} is not valid JSON ({exc}); fix or remove it"
            ) from exc
        self.state = RelayState.from_json(data, str(self.path))
        return self.state

    async def save(self) -> None:
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            if self._written >= ticket:
                return
            covers = self._asked
            data = json.dumps(self.state.to_json(), ensure_ascii=False).encode()
            # A thread cannot be stopped: a cancelled save still waits for its write (and keeps the lock),
            # so an older write can never land after a newer one.
            write = asyncio.ensure_future(
                asyncio.to_thread(write_atomically, self.path, data, "the relay state")
            )
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                while not write.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([write])
                raise
            self.writes += 1
            self._written = covers
