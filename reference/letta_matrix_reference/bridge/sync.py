"""One sync: list Letta's agents, then bring each agent's Matrix side (user, room, place in the space) in
line with it, a few agents at a time.

Every step is recorded in the mapping as it is done, and skipped when the record says it is done, so a
sync of an unchanged world calls Matrix for nothing but the logins and the space check, and a run that
stopped halfway is resumed by the next one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.errors import BridgeError, FatalError
from letta_matrix_reference.bridge.http import RetryPolicy, Sleep
from letta_matrix_reference.bridge.letta import Agent, LettaClient
from letta_matrix_reference.bridge.matrix import MatrixClient, MatrixHomeserver
from letta_matrix_reference.bridge.rooms import RoomManager
from letta_matrix_reference.bridge.spaces import SpaceManager
from letta_matrix_reference.bridge.store import (
    ACTIVE,
    REMOVED,
    AgentRecord,
    BridgeState,
    DataDirLock,
    Persister,
    prepare_data_dir,
)
from letta_matrix_reference.bridge.users import UserManager, display_name_for

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _first_error_raised() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group whose first error is raised as itself, not inside an ExceptionGroup: callers (and
    the bridge's users) catch the bridge's errors by type."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


@dataclass(frozen=True)
class AgentFailure:
    agent_id: str
    name: str
    reason: str
    error: str  # the exception's class name, e.g. "ApiError", "AgentUserConflict"


@dataclass
class SyncReport:
    agents_seen: int = 0
    users_created: int = 0
    rooms_created: int = 0
    renamed: int = 0
    removed: int = 0
    reactivated: int = 0
    failed: list[AgentFailure] = field(default_factory=list)
    listing_complete: bool = True
    mapping_writes: int = 0

    @property
    def ok(self) -> bool:
        """Every agent in sync: none failed, and none missed by an incomplete listing."""
        return not self.failed and self.listing_complete

    def summary(self) -> str:
        text = (
            f"{self.agents_seen} agents: {self.users_created} users and {self.rooms_created} rooms created, "
            f"{self.renamed} renamed, {self.removed} removed, {self.reactivated} back, "
            f"{len(self.failed)} failed"
        )
        return text if self.listing_complete else text + " (agent list incomplete)"


@dataclass
class _Shared:
    """What every agent's sync needs from the run."""

    admin: MatrixClient
    bot: MatrixClient
    space_id: str

    @property
    def members(self) -> list[MatrixClient]:
        """Who joins every agent room (once, if the admin is the bot)."""
        return [self.admin] if self.bot.user_id == self.admin.user_id else [self.admin, self.bot]


class _AgentSync:
    """One agent's steps, each skipped when its record says it is done."""

    def __init__(self, bridge: Bridge, agent: Agent, record: AgentRecord, shared: _Shared) -> None:
        self.bridge = bridge
        self.agent = agent
        self.record = record
        self.shared = shared
        self.client: MatrixClient | None = None

    def converged(self) -> bool:
        record, agent, space_id = self.record, self.agent, self.shared.space_id
        return (
            record.registered
            and record.displayname == display_name_for(agent)
            and record.room_id is not None
            and record.room_name == agent.name
            and record.space_child == space_id
            and record.space_parent == space_id
            and all(member.user_id in record.joined for member in self.shared.members)
        )

    async def agent_client(self) -> MatrixClient:
        """The agent user's client, logged in on first use only (an unchanged agent needs none)."""
        if self.client is None:
            self.client = await self.bridge.users.agent_client(self.record)
        return self.client

    async def run(self, report: SyncReport) -> None:
        bridge, record, agent, shared = self.bridge, self.record, self.agent, self.shared
        created, client = await bridge.users.ensure_agent_user(record)
        if client is not None:
            self.client = client
        report.users_created += created
        renamed = await bridge.users.ensure_display_name(record, agent, self.agent_client)
        if record.room_id is None:
            members = [member.user_id for member in shared.members]
            client = await self.agent_client()
            # A user made in this very sync cannot have made a room yet: no need to look for one.
            made = await bridge.rooms.ensure_room(
                record, agent, client, members, shared.space_id, may_exist=not created
            )
            report.rooms_created += made  # not `+= await ...`: that reads the count before awaiting
        renamed = await bridge.rooms.ensure_name(record, agent, self.agent_client) or renamed
        await bridge.spaces.link(record, shared.space_id, shared.admin, self.agent_client)
        await bridge.rooms.ensure_members(record, shared.members, self.agent_client)
        record.name = agent.name
        report.renamed += renamed


class Bridge:
    """The bridge: its clients, its mapping, and `sync_once`. Use as `async with Bridge(config) as b:`.

    While it is open it holds a lock on its data directory, so no second bridge can write the same mapping;
    its syncs run one at a time. `sleep` is how the clients wait between retries (tests pass one that
    returns at once)."""

    # Set up by `__aenter__`, once the data directory is locked.
    state: BridgeState
    persister: Persister
    users: UserManager
    rooms: RoomManager
    spaces: SpaceManager

    def __init__(
        self, config: BridgeConfig, *, sleep: Sleep = asyncio.sleep, rng: random.Random | None = None
    ) -> None:
        self.config = config
        retry = RetryPolicy(config.max_attempts, config.backoff_base, config.backoff_cap)
        self.rng = rng = rng or random.Random()
        self.letta = LettaClient(
            config.letta_url,
            config.letta_token,
            timeout=config.request_timeout,
            retry=retry,
            sleep=sleep,
            rng=rng,
            page_limit=config.page_limit,
            max_pages=config.max_pages,
        )
        self.homeserver = MatrixHomeserver(
            config.matrix_url, timeout=config.request_timeout, retry=retry, sleep=sleep, rng=rng
        )
        self._lock = DataDirLock(config.data_dir)
        self._stack = contextlib.AsyncExitStack()
        self._admin: MatrixClient | None = None
        self._bot: MatrixClient | None = None
        self._one_sync_at_a_time = asyncio.Lock()

    async def __aenter__(self) -> Self:
        mapping = prepare_data_dir(self.config.data_dir)
        self._lock.acquire()
        try:
            # Read (and cleaned up after) only once no other bridge can be writing it.
            mapping.remove_leftovers()
            self.state = mapping.load()
            self.persister = Persister(mapping, self.state)
            self.users = UserManager(self.homeserver, self.config, self.state, self.persister)
            self.rooms = RoomManager(self.config.server_name, self.persister)
            self.spaces = SpaceManager(
                self.config.server_name, self.config.space_name, self.state, self.persister
            )
            await self._stack.enter_async_context(self.letta)
            await self._stack.enter_async_context(self.homeserver)
        except BaseException:
            await self._stack.aclose()
            self._lock.release()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            await self._stack.aclose()
        finally:
            self._lock.release()

    async def sessions(self) -> tuple[MatrixClient, MatrixClient]:
        """The admin's and the bot's clients, logged in once per bridge (they log in again by themselves
        when the server forgets a token)."""
        if self._admin is None:
            self._admin = await self.users.log_in_admin()
        if self._bot is None:
            self._bot = await self.users.ensure_bot(self._admin)
        return self._admin, self._bot

    async def sync_once(self) -> SyncReport:
        """Sync every agent once. Raises a `FatalError` (configuration, mapping file) or the error that
        stopped the agent listing or the space; any other agent's failure is in the report."""
        async with self._one_sync_at_a_time:
            return await self._sync()

    async def _sync(self) -> SyncReport:
        report = SyncReport()
        writes = self.persister.writes
        try:
            # The logins and the agent listing need nothing from each other: both at once.
            async with _first_error_raised() as group:
                sessions = group.create_task(self.sessions())
                listed = group.create_task(self.letta.list_agents())
            (admin, bot), listing = sessions.result(), listed.result()
            report.agents_seen, report.listing_complete = len(listing.agents), listing.complete
            space_id = await self.spaces.ensure_space(admin, bot)
            shared = _Shared(admin, bot, space_id)
            work = self._plan(listing.agents, shared, report)
            # Every new agent's password is on disk before its user is registered.
            await self.persister.commit()
            await self._run(work, report)
            if listing.complete:
                self._mark_removed({agent.id for agent in listing.agents}, report)
        finally:
            await self.persister.commit()
            report.mapping_writes = self.persister.writes - writes
        log.info("sync done: %s", report.summary())
        return report

    def _plan(self, agents: tuple[Agent, ...], shared: _Shared, report: SyncReport) -> list[_AgentSync]:
        """New records for new agents, reactivated ones for returning agents; the agents with work to do."""
        work = []
        for agent in agents:
            record = self.state.agents.get(agent.id)
            if record is None:
                record = self.state.add(self.users.new_record(agent))
            elif record.status == REMOVED:
                log.info("agent %s (%s) is back", agent.id, agent.name)
                record.status, record.removed_at = ACTIVE, None
                report.reactivated += 1
            step = _AgentSync(self, agent, record, shared)
            if not step.converged():
                work.append(step)
        return work

    async def _run(self, work: list[_AgentSync], report: SyncReport) -> None:
        pending: Iterator[_AgentSync] = iter(work)

        async def worker() -> None:
            for step in pending:  # one iterator shared by all workers: each agent is taken once
                await self._sync_agent(step, report)

        # Only a fatal error leaves a worker, and so stops the others.
        async with _first_error_raised() as group:
            for _ in range(min(self.config.concurrency, len(work))):
                group.create_task(worker())

    async def _sync_agent(self, step: _AgentSync, report: SyncReport) -> None:
        try:
            await step.run(report)
        except FatalError:
            raise
        except BridgeError as exc:
            log.error("agent %s (%s) failed: %s", step.agent.id, step.agent.name, exc)
            report.failed.append(AgentFailure(step.agent.id, step.agent.name, str(exc), type(exc).__name__))
        finally:
            if step.client is not None:
                self.users.remember(step.record, step.client)

    def _mark_removed(self, present: set[str], report: SyncReport) -> None:
        """Agents gone from Letta keep their user and room (history stays readable); the record says so."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for record in self.state.agents.values():
            if record.agent_id not in present and record.status == ACTIVE:
                log.info(
                    "agent %s (%s) is gone from Letta; keeping its user and room",
                    record.agent_id,
                    record.name,
                )
                record.status, record.removed_at = REMOVED, now
                report.removed += 1
