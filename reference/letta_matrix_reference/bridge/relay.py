"""The relay: people's messages in agent rooms go to their agent, the agent's answers come back into the
room as the agent's user.

The bot syncs (a long-poll, filtered to the agent rooms). For each person's message, one at a time per
agent: the agent user starts typing, the message goes to Letta (sendAgentMessage), every assistant message
and every `matrix_agent_message` tool call of the turn is posted as a reply by the agent user, the message
gets the agent's read receipt, typing stops. When Letta cannot answer (the agent is gone, it keeps
failing) the room gets a notice saying so instead.

Exactly once, across faults and restarts (`relay_state`): replies are saved before they are posted and
posted under transaction ids made from the event id, events are marked handled once answered, and the
sync token moves past a batch only when all of it is handled.

What a person waits for is kept short: one transaction of the state (one device flush) per turn before
its reply, the outbox. The handled marks and the token of a batch ride on the next turn's outbox write
when the next batch comes within `flush_delay`; otherwise they are written on their own while the next
/sync waits (saves are in order: none lands after a later one). Typing on runs beside the Letta call and
is waited for only before typing off; the read receipt and typing off go out together after the reply. A
run that dies before the batch's marks are written posts the batch's saved replies again on restart, under
the same transaction ids, which the homeserver answers with the first events: the same as dying between
posting and marking handled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from letta_matrix_reference.bridge.errors import (
    ApiError,
    BridgeError,
    ConfigurationError,
    ProtocolError,
    RetriesExhausted,
)
from letta_matrix_reference.bridge.http import Sleep
from letta_matrix_reference.bridge.matrix import MatrixClient
from letta_matrix_reference.bridge.relay_events import (
    AgentRoom,
    Incoming,
    fill_gaps,
    incoming,
    otid,
    replies,
    reply_content,
    sync_filter,
    txn_id,
)
from letta_matrix_reference.bridge.relay_state import Pending, RelayStore
from letta_matrix_reference.bridge.sync import Bridge

log = logging.getLogger(__name__)

TIMELINE_LIMIT = 100  # events per room and sync (Synapse's cap)
# Runs in a row the homeserver may refuse (4xx) a turn's replies before the relay gives up on that message:
# a refusal can pass (power levels, a membership, a fault), but a room must not be blocked for ever.
MAX_REFUSALS = 5
TYPING_TIMEOUT_MS = 30_000  # a relay that dies mid-turn leaves typing on no longer than this
# How long a batch's handled marks and token may wait for the next turn's write to carry them, before they
# are written on their own (they are durable within this and one batch).
FLUSH_DELAY = 0.05
# Called at named points of a turn ("asking": before Letta is asked; "answered": its reply is saved;
# "posted": the replies are in the room, the event not yet marked handled): tests stop the relay there, as
# a crash would.
Checkpoint = Callable[[str, Incoming], Awaitable[None]]


async def no_checkpoint(point: str, message: Incoming) -> None:
    """No checkpoint."""


def _failure(exc: BridgeError) -> str:
    """Why Letta did not answer, in a few words for the room (no bodies: they may hold anything)."""
    if isinstance(exc, ApiError):
        return "the agent was not found" if exc.status == 404 else f"Letta answered {exc.status}"
    if isinstance(exc, RetriesExhausted):
        return f"Letta kept failing ({exc.attempts} attempts)"
    return "Letta's answer was not understood"


class Relay:
    """Relays for an open `Bridge` (whose mapping says which room is whose). `sleep` paces retries after a
    failed sync in `run(forever=True)`; `checkpoint` is for tests."""

    flush_delay = FLUSH_DELAY

    def __init__(
        self,
        bridge: Bridge,
        *,
        poll_ms: int = 30_000,
        sleep: Sleep = asyncio.sleep,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> None:
        self.bridge = bridge
        # The long-poll must end before the request times out, or every quiet minute would be a "failure".
        self.poll_ms = max(0, min(poll_ms, int(bridge.config.request_timeout * 1000 / 2)))
        self.store = RelayStore(bridge.config.data_dir)
        self.sleep = sleep
        self.checkpoint = checkpoint
        self.rooms: dict[str, AgentRoom] = {}
        self.bridge_users: frozenset[str] = frozenset()
        self.turns = 0
        self._bot: MatrixClient | None = None
        self._filter: tuple[tuple[str, ...], str] | None = None
        self._agents: dict[str, MatrixClient] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # The store's write count when a batch left its handled marks and token for the next write to carry
        # (None: they were written): a batch that finds no write since then writes them at once.
        self._left_at: int | None = None

    async def start(self) -> None:
        """Load the saved state and learn the rooms from the mapping (call again after a provisioning
        sync to take in new agents)."""
        if self._bot is None:
            self.store.load()
        admin, self._bot = await self.bridge.sessions()
        records = [r for r in self.bridge.state.agents.values() if r.registered]
        # A removed agent's room too: whoever writes there is told the agent is gone (Letta's 404).
        self.rooms = {
            r.room_id: AgentRoom(r.agent_id, r.user_id, r.name) for r in records if r.room_id is not None
        }
        self.bridge_users = frozenset({admin.user_id, self._bot.user_id, *(r.user_id for r in records)})

    async def _filter_id(self) -> str:
        rooms = tuple(sorted(self.rooms))
        if self._filter is None or self._filter[0] != rooms:
            assert self._bot is not None
            self._filter = (rooms, await self._bot.define_filter(sync_filter(rooms, TIMELINE_LIMIT)))
        return self._filter[1]

    async def run(self, stop: asyncio.Event | None = None, *, forever: bool = False) -> None:
        """Relay until `stop` is set (a turn under way is finished first), or, unless `forever`, until a
        sync brings nothing to answer. Without `forever` a failure is raised (the next run carries on
        where this one stopped); with it, the relay waits (backing off) and syncs again."""
        stop = stop or asyncio.Event()
        if self._bot is None:
            await self.start()
        try:
            try:
                await self._loop(stop, forever)
            except Exception:
                await self.store.save()  # the turns finished before the failure stay finished
                raise
            await self.store.save()
        finally:
            await self.store.close()

    async def _loop(self, stop: asyncio.Event, forever: bool) -> None:
        failures = 0
        while not stop.is_set():
            try:
                busy = await self._once(stop, self.poll_ms if forever else 0)
                failures = 0
            except ConfigurationError:
                raise
            except BridgeError as exc:
                if not forever:
                    raise
                failures += 1
                pause = self.bridge.homeserver.retry.backoff(failures, self.bridge.rng)
                log.error("relay: %s; syncing again in %.1f s", exc, pause)
                await self.sleep(pause)
                continue
            if busy is None or (not busy and not forever):
                return

    async def _once(self, stop: asyncio.Event, timeout_ms: int) -> bool | None:
        """One sync and its batch: whether there was anything to answer (None: stopped while waiting)."""
        assert self._bot is not None
        state = self.store.state
        await self._resume()
        filter_id = await self._filter_id()
        syncing = asyncio.ensure_future(self._bot.sync(state.since, filter_id, timeout_ms))
        stopping = asyncio.ensure_future(stop.wait())
        flushing: asyncio.Future[None] | None = None
        try:
            # The last batch's handled marks and token: when the next batch comes within `flush_delay`, the
            # first write of its turns (an outbox) carries them, one device flush instead of two on the
            # person's way; otherwise, or when the last batch already left its marks to this one, they are
            # written while the server is asked for the next batch and while that one is answered.
            waits = self._left_at is None or self.store.writes != self._left_at
            done, _ = await asyncio.wait(
                (syncing, stopping),
                timeout=self.flush_delay if waits else 0,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if done:
                self._left_at = self.store.writes
            else:
                self._left_at = None
                flushing = asyncio.ensure_future(self.store.save())
                await asyncio.wait((syncing, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not syncing.done():
                syncing.cancel()
        try:
            if not syncing.done() or syncing.cancelled():
                return None
            return await self._batch(syncing.result())
        finally:
            if flushing is not None:
                await flushing  # its failure stops the run like the batch's own

    async def _batch(self, body: dict[str, Any]) -> bool:
        """Answer a sync's batch, then (and only then) move the saved token past it; whether there was
        anything to answer."""
        assert self._bot is not None
        state = self.store.state
        await fill_gaps(body, state.since, self.rooms, self._bot.room_messages)
        messages = incoming(body, self.rooms, self.bridge_users, self._bot.user_id)
        todo = [m for m in messages if not state.is_handled(m.event_id)]
        await self._answer_all(todo)
        state.since = body["next_batch"]
        return bool(todo)

    async def _resume(self) -> None:
        """Post the saved replies of turns a previous run answered but did not finish posting."""
        state = self.store.state
        for event_id, pending in list(state.outbox.items()):
            room = self.rooms.get(pending.room_id)
            if room is None:
                continue
            message = Incoming(event_id, pending.room_id, "", "")
            async with self._lock(room.agent_id):
                await self._finish(message, room, pending)

    async def _answer_all(self, messages: list[Incoming]) -> None:
        """Rooms in parallel, each room's messages in order; the first failure is raised once the others
        have stopped."""
        by_room: dict[str, list[Incoming]] = {}
        for message in messages:
            by_room.setdefault(message.room_id, []).append(message)

        async def room_turns(queue: list[Incoming]) -> None:
            for message in queue:
                await self._turn(message)

        try:
            async with asyncio.TaskGroup() as group:
                for queue in by_room.values():
                    group.create_task(room_turns(queue))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    def _lock(self, agent_id: str) -> asyncio.Lock:
        return self._locks.setdefault(agent_id, asyncio.Lock())

    async def _agent(self, room: AgentRoom) -> MatrixClient:
        client = self._agents.get(room.agent_id)
        if client is None:
            record = self.bridge.state.agents[room.agent_id]
            client = await self.bridge.users.agent_client(record)
            self._agents[room.agent_id] = client
        return client

    async def _turn(self, message: Incoming) -> None:
        room = self.rooms[message.room_id]
        state = self.store.state
        async with self._lock(room.agent_id):  # one conversation at a time per agent
            if state.is_handled(message.event_id):
                return
            pending = state.outbox.get(message.event_id)
            if pending is not None:
                await self._finish(message, room, pending)
                return
            client = await self._agent(room)
            # Typing starts while Letta thinks, and is waited for only before typing off (which must reach
            # the server after it): neither the question nor the answer waits a round trip for it.
            typing = asyncio.ensure_future(
                self._best_effort(
                    "typing on", lambda: client.set_typing(message.room_id, True, TYPING_TIMEOUT_MS)
                )
            )
            try:
                pending = Pending(message.room_id, room.agent_id, await self._ask(message, room))
                state.outbox[message.event_id] = pending
                await self.store.save()
                await self.checkpoint("answered", message)
                await self._finish(message, room, pending, typing)
            finally:
                if not typing.done():
                    await asyncio.wait([typing])

    async def _ask(self, message: Incoming, room: AgentRoom) -> list[dict[str, Any]]:
        """The replies to post: the agent's turn, or a notice that it could not answer."""
        self.turns += 1
        await self.checkpoint("asking", message)
        try:
            said = await self.bridge.letta.send_message(
                room.agent_id, message.body, otid=otid(message.event_id)
            )
        except ConfigurationError:
            raise
        except (ApiError, RetriesExhausted, ProtocolError) as exc:
            log.warning("agent %s could not answer %s: %s", room.agent_id, message.event_id, exc)
            text = f"{room.name} could not answer this message ({_failure(exc)}). Please try again later."
            return [reply_content(message, 0, text, notice=True)]
        return [reply_content(message, n, text) for n, text in enumerate(replies(said))]

    async def _finish(
        self, message: Incoming, room: AgentRoom, pending: Pending, typing: asyncio.Future[None] | None = None
    ) -> None:
        """Post the saved replies (each under its own transaction id), read receipt, typing off, handled.
        `typing`: this run's typing on, still under way perhaps."""
        client = await self._agent(room)
        try:
            for n, content in enumerate(pending.replies):
                await client.send_message(pending.room_id, content, txn_id(message.event_id, n))
            await self.checkpoint("posted", message)
            if typing is not None:
                await asyncio.wait([typing])
                # Its failure stops the run before typing off: the replies are in, the next run finishes.
                typing.result()
            # Together: one round trip, not two, before the relay syncs again.
            outcomes = await asyncio.gather(
                client.set_typing(pending.room_id, False),
                self._best_effort(
                    "read receipt", lambda: client.send_receipt(pending.room_id, message.event_id)
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        except ApiError as exc:
            # The room refuses the agent's reply or its typing off (it left, lost its power, or the server
            # misbehaves). The run stops here, so the room's later messages are not answered before this one
            # and the typing notice is not left on; after MAX_REFUSALS runs the message is given up.
            pending.refused += 1
            if pending.refused < MAX_REFUSALS:
                await self.store.save()
                raise
            log.error(
                "giving up on finishing the answer to %s in %s, refused %d times: %s",
                message.event_id, pending.room_id, pending.refused, exc,
            )  # fmt: skip
        self.store.state.mark_handled(message.event_id)  # written with the batch's token (module docstring)

    @staticmethod
    async def _best_effort(what: str, call: Callable[[], Awaitable[None]]) -> None:
        """Typing and receipts are courtesy: a refusal (4xx) is logged and the turn goes on. A failure that
        may pass (5xx, a lost connection, after the retries) stops the run like any other, and the next run
        does the turn's remaining steps again: typing must not stay on because one request was lost. The
        call is made here, so a turn cancelled before this starts leaves no coroutine never awaited."""
        try:
            await call()
        except (ApiError, ProtocolError) as exc:
            log.warning("relay: %s refused: %s", what, exc)
