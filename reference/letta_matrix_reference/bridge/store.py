"""The mapping file: which Matrix user, room and space belong to which Letta agent, and which steps of
setting them up are done.

It holds the agents' passwords, so it is created readable by its owner only (0600) and never exists with
looser permissions, not even for a moment. It is replaced atomically (a temporary file in the same
directory, flushed and fsynced, renamed over the old one, then the directory fsynced): a crash at any
moment leaves either the old file or the new one, whole. A file this code cannot read is an error, never
a reason to start over, because starting over would orphan every user and room made so far."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from letta_matrix_reference.bridge.errors import StoreError

log = logging.getLogger(__name__)

MAPPING_VERSION = 1
MAPPING_FILE = "mapping.json"
LOCK_FILE = "bridge.lock"
ACTIVE: Literal["active"] = "active"
REMOVED: Literal["removed"] = "removed"
Status = Literal["active", "removed"]


class _Reader:
    """Typed access to one JSON object of the file, with errors that say where the file is wrong."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise StoreError(f"{where} must be a JSON object")
        self.data: dict[str, Any] = data
        self.where = where

    def _wrong(self, key: str, expected: str) -> StoreError:
        return StoreError(f"{self.where}.{key} must be {expected}, found {self.data.get(key)!r}")

    def string(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str) or not value:
            raise self._wrong(key, "a non-empty string")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._wrong(key, "a string or null")
        return value

    def boolean(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._wrong(key, "a list of strings")
        return tuple(value)


@dataclass
class AgentRecord:
    """One agent's Matrix side. Each step field says what was last done, so a sync compares it with what
    should be and calls the server only for the difference."""

    agent_id: str
    name: str  # the agent's name as last seen in Letta
    user_id: str
    # Generated, and saved, before the user is registered: a user made but not recorded would be lost.
    password: str = field(repr=False)
    registered: bool = False
    access_token: str | None = field(default=None, repr=False)
    device_id: str | None = None
    displayname: str | None = None  # the display name last set
    room_id: str | None = None
    room_name: str | None = None  # the room name last set (None: not known to be set)
    space_child: str | None = None  # the space whose m.space.child names this room
    space_parent: str | None = None  # the space this room's m.space.parent names
    # The admin and bot users known to have joined the room. A tuple: every field of a record is immutable,
    # so a change is always an assignment, which is how the state hears of it.
    joined: tuple[str, ...] = ()
    status: Status = ACTIVE
    removed_at: str | None = None  # when the agent was last found gone from Letta (ISO 8601, UTC)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        # Tell the state holding this record that it changed (see `BridgeState.add`): the mapping file
        # re-encodes only the records that did.
        changed = self.__dict__.get("_changed")
        if changed is not None:
            changed.add(self.agent_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "user_id": self.user_id,
            "password": self.password,
            "registered": self.registered,
            "access_token": self.access_token,
            "device_id": self.device_id,
            "displayname": self.displayname,
            "room_id": self.room_id,
            "room_name": self.room_name,
            "space_child": self.space_child,
            "space_parent": self.space_parent,
            "joined": list(self.joined),
            "status": self.status,
            "removed_at": self.removed_at,
        }

    @classmethod
    def from_json(cls, agent_id: str, data: Any, where: str) -> AgentRecord:
        read = _Reader(data, where)
        status = read.string("status")
        if status not in (ACTIVE, REMOVED):
            raise StoreError(f"{where}.status must be {ACTIVE!r} or {REMOVED!r}, found {status!r}")
        return cls(
            agent_id=agent_id,
            name=read.optional_string("name") or "",
            user_id=read.string("user_id"),
            password=read.string("password"),
            registered=read.boolean("registered"),
            access_token=read.optional_string("access_token"),
            device_id=read.optional_string("device_id"),
            displayname=read.optional_string("displayname"),
            room_id=read.optional_string("room_id"),
            room_name=read.optional_string("room_name"),
            space_child=read.optional_string("space_child"),
            space_parent=read.optional_string("space_parent"),
            joined=read.strings("joined"),
            status=ACTIVE if status == ACTIVE else REMOVED,
            removed_at=read.optional_string("removed_at"),
        )


@dataclass
class BridgeState:
    """Everything in the mapping file."""

    # Marks the space this bridge creates, so a space whose id was lost can be recognised.
    bridge_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    space_id: str | None = None
    space_joined: tuple[str, ...] = ()  # who (the bot) has joined the space
    # The devices of the admin's and the bot's logins, reused so each run does not add one more.
    devices: dict[str, str] = field(default_factory=dict)
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    # The ids of the records changed since the mapping file last encoded them (not part of the file).
    changed: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for record in self.agents.values():
            self._watch(record)

    def add(self, record: AgentRecord) -> AgentRecord:
        """Add a record; from now on its changes are noticed (records given to the constructor's are too)."""
        self.agents[record.agent_id] = record
        self._watch(record)
        return record

    def _watch(self, record: AgentRecord) -> None:
        object.__setattr__(record, "_changed", self.changed)
        self.changed.add(record.agent_id)

    def header_json(self) -> dict[str, Any]:
        """Everything but the agents."""
        return {
            "version": MAPPING_VERSION,
            "bridge_id": self.bridge_id,
            "space_id": self.space_id,
            "space_joined": list(self.space_joined),
            "devices": dict(self.devices),
        }

    def to_json(self) -> dict[str, Any]:
        agents = {agent_id: record.to_json() for agent_id, record in self.agents.items()}
        return {**self.header_json(), "agents": agents}

    @classmethod
    def from_json(cls, data: Any, where: str) -> BridgeState:
        read = _Reader(data, where)
        version = read.data.get("version")
        if version != MAPPING_VERSION:
            raise StoreError(
                f"{where} has version {version!r}; this bridge reads version {MAPPING_VERSION} only. "
                "Use the bridge release that wrote it, or restore a backup."
            )
        devices = read.data.get("devices", {})
        if not isinstance(devices, dict) or not all(isinstance(v, str) for v in devices.values()):
            raise StoreError(f"{where}.devices must map user ids to device ids")
        agents = _Reader(read.data.get("agents", {}), f"{where}.agents").data
        return cls(
            bridge_id=read.string("bridge_id"),
            space_id=read.optional_string("space_id"),
            space_joined=read.strings("space_joined"),
            devices=dict(devices),
            agents={
                agent_id: AgentRecord.from_json(agent_id, record, f"{where}.agents[{agent_id!r}]")
                for agent_id, record in agents.items()
            },
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class MappingFile:
    """Reads and atomically replaces one mapping file.

    The file is JSON with one agent per line, which keeps it readable and lets `encode` re-encode only the
    agents that changed since the last write: with a thousand agents, encoding all of them for each of the
    hundreds of writes of a first sync would cost more than the rest of the bridge's work."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.content: bytes | None = None  # the file as last read or written
        self._encoded: dict[str, str] = {}  # agent id: its line in the file, as last encoded

    def load(self) -> BridgeState:
        """The saved state; a fresh one if there is no file yet. Reading changes nothing, so anyone may read
        (a test, a fuzz runner's invariants); only the bridge holding the data dir removes leftovers."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return BridgeState()
        except OSError as exc:
            raise StoreError(f"cannot read the mapping file {self.path}: {exc}") from exc
        self.content = raw
        if self.path.stat().st_mode & 0o077:
            log.warning("%s is readable by others but holds passwords; chmod 600 it", self.path)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StoreError(
                f"the mapping file {self.path} is not valid JSON ({exc}); not starting over, which would "
                "orphan every user and room made so far: restore it from a backup or fix it"
            ) from exc
        return BridgeState.from_json(data, str(self.path))

    def encode(self, state: BridgeState) -> bytes:
        """The file's content for `state` (whose records came through its constructor or `add`)."""
        for agent_id in state.changed:
            self._encoded[agent_id] = f"{_dumps(agent_id)}: {_dumps(state.agents[agent_id].to_json())}"
        state.changed.clear()
        lines = [self._encoded[agent_id] for agent_id in state.agents]
        header = _dumps(state.header_json())
        # The header object, opened up to take the agents, one per line.
        text = f'{header[:-1]}, "agents": {{\n' + ",\n".join(lines) + "\n}}\n"
        return text.encode()

    def write(self, data: bytes) -> None:
        """Replace the file with `data`, atomically and durably."""
        write_atomically(self.path, data, "the mapping file")
        self.content = data

    def remove_leftovers(self) -> None:
        """Temporary files of a write that crashed: never the mapping, so of no use to anyone. Only for the
        holder of the data dir's lock: another process's may be a write in progress."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            log.info("removing %s, left by an interrupted write", stale)
            with contextlib.suppress(OSError):
                stale.unlink()


def write_atomically(path: Path, data: bytes, what: str) -> None:
    """Replace `path` with `data`, atomically and durably: a crash at any moment leaves the old file or
    the new one, whole, never readable by others (0600 from its first byte)."""
    directory = path.parent
    try:
        # mkstemp creates the file 0600: it is never readable by others, even before it is complete.
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StoreError(f"cannot write {what} in {directory}: {exc}") from exc
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write {what} {path}: {exc}") from exc
        raise
    # The rename is only durable once the directory entry is.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as exc:
        raise StoreError(f"cannot sync the directory of {path}: {exc}") from exc


class DataDirLock:
    """An exclusive lock on the data directory: two bridges writing one mapping file would lose entries."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._handle: int | None = None

    def acquire(self) -> None:
        try:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(handle)
            raise StoreError(f"another bridge is using {self.path.parent} (it holds {self.path})") from exc
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None


class Persister:
    """Saves the state when asked, durably, batching requests that arrive while a write is under way
    (group commit): each `commit()` returns once a write that includes every change made before the call
    is on disk, and one write serves everyone who asked while the previous one was running."""

    def __init__(self, mapping: MappingFile, state: BridgeState) -> None:
        self.mapping = mapping
        self.state = state
        self.writes = 0
        self._asked = 0
        self._written = 0
        self._lock = asyncio.Lock()

    async def commit(self) -> None:
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            if self._written >= ticket:
                return  # a write that started after this call has already covered it
            covers = self._asked
            # Encode here, in the event loop, where nothing changes the state midway; write in a thread.
            data = self.mapping.encode(self.state)
            if data != self.mapping.content:
                await self._write(data)
                self.writes += 1
            self._written = covers

    async def _write(self, data: bytes) -> None:
        """Write in a thread, holding the caller's lock until the bytes are on disk, even when cancelled:
        a thread cannot be stopped, and with the lock released a newer write could finish first and then
        be replaced by this older one."""
        write = asyncio.ensure_future(asyncio.to_thread(self.mapping.write, data))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            while not write.done():
                # Cancelled again: still wait. The write is short; the cancellation goes on right after.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([write])
            raise


def prepare_data_dir(directory: Path) -> MappingFile:
    """The mapping file in `directory`, which is created (0700) if missing."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {directory}: {exc}") from exc
    return MappingFile(directory / MAPPING_FILE)
