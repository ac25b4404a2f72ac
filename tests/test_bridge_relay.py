"""The relay against the strict mocks: a person's message in an agent room is answered exactly once, by that
agent's user, in that room; across restarts at any step of a turn, faults on either side, the bridge's own
users and old history; Letta's failures become a notice."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from typing import Any

import pytest

from contracts.harness.fuzz import FuzzContext
from contracts.harness.fuzz.people import agent_rooms, let_in, say
from contracts.harness.fuzz.plan import PERSON as PLAN_PERSON
from contracts.harness.fuzz.plan import FaultSpec, Plan, Said
from contracts.harness.fuzz.runner import fuzz
from contracts.harness.fuzz.target import load_target
from letta_matrix_reference.bridge import ApiError
from letta_matrix_reference.bridge.relay import Relay
from letta_matrix_reference.bridge.relay_events import PART_KEY, Incoming
from letta_matrix_reference.bridge.relay_state import RELAY_FILE, RelayStore
from letta_matrix_reference.bridge.target import relay_against, sync_against
from letta_matrix_reference.bridge.users import agent_localpart
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import Sleeps

PERSON = "ada"


class Killed(BaseException):
    """The relay's process dying at a checkpoint (not an Exception: nothing in the relay catches it)."""


def killer(point: str) -> Any:
    async def checkpoint(at: str, message: Incoming) -> None:
        if at == point:
            raise Killed(at)

    return checkpoint


async def provisioned(fuzz_context: FuzzContext, matrix_mock: MatrixMock, names: list[str]) -> dict[str, str]:
    """Agents' rooms made by one bridge run, the person let into each: {agent name: room id}."""
    await sync_against(fuzz_context)
    core = {matrix_mock.user_id("admin"), matrix_mock.user_id("letta")}
    rooms = {room["name"]: room for room in agent_rooms(matrix_mock.snapshot(), core)}
    for name in names:
        let_in(matrix_mock.world, rooms[name], PERSON)
    return {name: rooms[name]["room_id"] for name in names}


def answers(matrix_mock: MatrixMock, room_id: str) -> list[dict[str, Any]]:
    """The relay's replies in the room (each carries the part of the turn it is)."""
    return [
        event
        for event in matrix_mock.timeline(room_id)
        if event["type"] == "m.room.message" and PART_KEY in event["content"]
    ]


def agent_user(matrix_mock: MatrixMock, agent_id: str) -> str:
    return matrix_mock.user_id(agent_localpart(agent_id))


async def test_a_persons_message_gets_one_reply_from_its_agent_in_its_room(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    ada, bob = letta_mock.add_agent("Ada"), letta_mock.add_agent("Bob")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada", "Bob"])
    asked = say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    assert await relay_against(fuzz_context) == 1
    [reply] = answers(matrix_mock, rooms["Ada"])
    assert reply["sender"] == agent_user(matrix_mock, ada.id)
    assert reply["content"]["body"] == "echo: hello"
    assert reply["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": asked}}
    assert answers(matrix_mock, rooms["Bob"]) == []
    assert matrix_mock.world.matrix.typing_users(rooms["Ada"]) == []
    assert [entry.status for entry in matrix_mock.journal("postReceipt")] == [200]
    # The next run finds nothing to do: the token moved past the batch, the event is remembered.
    assert await relay_against(fuzz_context) == 0
    assert len(answers(matrix_mock, rooms["Ada"])) == 1
    assert letta_mock.calls("sendAgentMessage") == 1
    assert bob.id not in str([e.path for e in letta_mock.journal("sendAgentMessage")])


@pytest.mark.parametrize("point", ["asking", "answered", "posted"])
async def test_a_restart_at_any_step_of_a_turn_neither_loses_nor_repeats_it(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext, point: str
) -> None:
    letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    with pytest.raises(Killed):
        await relay_against(fuzz_context, checkpoint=killer(point))
    assert await relay_against(fuzz_context) == (1 if point == "asking" else 0)
    assert [r["content"]["body"] for r in answers(matrix_mock, rooms["Ada"])] == ["echo: hello"]
    # Letta is asked once: a turn it answered is kept (saved before any reply is posted), not asked again.
    assert letta_mock.calls("sendAgentMessage") == 1
    assert matrix_mock.world.matrix.typing_users(rooms["Ada"]) == []


async def test_a_crash_while_the_handled_mark_is_written_still_answers_once(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    asked = say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    with pytest.raises(Killed):
        await relay_against(fuzz_context, checkpoint=killer("posted"))
    # The process died inside the transaction that writes the batch's handled mark and token: it never
    # committed (SQLite rolls it back when the file is next opened).
    died = sqlite3.connect(fuzz_context.workdir / RELAY_FILE, isolation_level=None)
    died.execute("BEGIN IMMEDIATE")
    died.execute("INSERT INTO handled (event_id) VALUES (?)", (asked,))
    died.execute("INSERT OR REPLACE INTO token (id, since) VALUES (0, 's-never-synced')")
    died.close()
    # Nothing of it counts: the saved replies are posted again (the same transaction ids: nothing new in
    # the room), Letta is not asked again.
    assert await relay_against(fuzz_context) == 0
    assert [r["content"]["body"] for r in answers(matrix_mock, rooms["Ada"])] == ["echo: hello"]
    assert letta_mock.calls("sendAgentMessage") == 1
    assert matrix_mock.world.matrix.typing_users(rooms["Ada"]) == []
    assert RelayStore(fuzz_context.workdir).load().is_handled(asked)


async def test_killed_while_letta_answers_the_room_still_gets_one_answer(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    agent = letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    letta_mock.script(agent.id, {"delay_ms": 300, "messages": [{"type": "assistant", "text": "slow"}]})
    say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    relay = asyncio.ensure_future(relay_against(fuzz_context))
    # Until Letta has taken the turn (its script is consumed as the turn starts; the mock has no event
    # for that, so it is looked at every millisecond), then the process dies.
    async with asyncio.timeout(5):
        while letta_mock.world.letta.agents[agent.id].scripts:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    relay.cancel()
    with pytest.raises(asyncio.CancelledError):
        await relay
    await relay_against(fuzz_context)
    # The killed run never heard Letta's answer: the turn is asked again, and answered once in the room.
    assert [r["content"]["body"] for r in answers(matrix_mock, rooms["Ada"])] == ["echo: hello"]
    assert matrix_mock.world.matrix.typing_users(rooms["Ada"]) == []


async def test_the_bridges_own_users_notices_and_history_before_the_join_are_not_relayed(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    agent = letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    room, world, person = rooms["Ada"], matrix_mock.world, matrix_mock.user_id(PERSON)
    bot, matrix = matrix_mock.user_id("letta"), world.matrix
    # History from before the bot (the syncing user) joined the room.
    matrix.leave(matrix.user_by_name(bot), room)
    say(world, room, person, "said before the bot came back")
    matrix.invite(matrix.user_by_name(agent_user(matrix_mock, agent.id)), room, bot)
    matrix.join(matrix.user_by_name(bot), room)
    for sender in (bot, matrix_mock.user_id("admin"), agent_user(matrix_mock, agent.id)):
        say(world, room, sender, f"from {sender}")
    say(world, room, person, "a notice", msgtype="m.notice")
    asked = say(world, room, person, "only this")
    assert await relay_against(fuzz_context) == 1
    [reply] = answers(matrix_mock, room)
    assert reply["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == asked
    assert [e.request_body["messages"][0]["content"] for e in letta_mock.journal("sendAgentMessage")] == [
        "only this"
    ]


async def test_an_agent_gone_from_letta_answers_with_a_notice_once(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    agent = letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    letta_mock.remove_agent(agent.id)
    say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "anyone there?")
    await relay_against(fuzz_context)
    await relay_against(fuzz_context)
    [notice] = answers(matrix_mock, rooms["Ada"])
    assert notice["content"]["msgtype"] == "m.notice"
    assert notice["content"]["body"] == (
        "Ada could not answer this message (the agent was not found). Please try again later."
    )
    assert matrix_mock.world.matrix.typing_users(rooms["Ada"]) == []


async def test_letta_failing_every_retry_gives_a_notice_after_backing_off(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext, sleeps: Sleeps
) -> None:
    agent = letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    letta_mock.script(agent.id, *[{"llm_error": "500"}] * 5)
    say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    await relay_against(fuzz_context, sleep=sleeps, max_attempts=5)
    [notice] = answers(matrix_mock, rooms["Ada"])
    assert "Letta kept failing (5 attempts)" in notice["content"]["body"]
    assert letta_mock.calls("sendAgentMessage") == 5
    assert len(sleeps.delays) >= 4  # a pause before each retry, none of it waited for


async def test_matrix_agent_message_tool_calls_are_posted_in_order(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    agent = letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    call = {"type": "tool_call", "name": "matrix_agent_message", "arguments": {"message": "first 🌍"}}
    done = {"type": "tool_return", "name": "matrix_agent_message", "tool_return": "ok"}
    other = {"type": "tool_call", "name": "web_search", "arguments": {"message": "not for the room"}}
    letta_mock.script(
        agent.id, {"messages": [call, done, other, done, {"type": "assistant", "text": "second"}]}
    )
    say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    await relay_against(fuzz_context)
    assert [(r["content"]["body"], r["content"][PART_KEY]) for r in answers(matrix_mock, rooms["Ada"])] == [
        ("first 🌍", 0),
        ("second", 1),
    ]


async def test_faults_on_both_sides_still_answer_once(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(3)
    names = ["agent-0000", "agent-0001", "agent-0002"]
    rooms = await provisioned(fuzz_context, matrix_mock, names)
    for name in names:
        for n in range(2):
            say(matrix_mock.world, rooms[name], matrix_mock.user_id(PERSON), f"{name} {n}")
    matrix_mock.inject("sendMessage", rate_limit={"retry_after_ms": 1}, times=2)
    matrix_mock.inject("sendMessage", drop_connection=True, after=1)
    matrix_mock.inject("sync", status=500, after=1, times=2)
    letta_mock.inject("sendAgentMessage", status=500, after=2)
    await relay_against(fuzz_context)
    for name in names:
        bodies = [r["content"]["body"] for r in answers(matrix_mock, rooms[name])]
        assert bodies == [f"echo: {name} 0", f"echo: {name} 1"]


async def test_a_stop_mid_turn_finishes_the_turn_and_saves(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    agent = letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    letta_mock.script(agent.id, {"delay_ms": 100, "messages": [{"type": "assistant", "text": "late"}]})
    stop = asyncio.Event()
    relay = asyncio.ensure_future(relay_against(fuzz_context, stop=stop, forever=True))
    # The person speaks, the relay's (long-polling) sync answers past it, then the stop comes mid-turn.
    asked = say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    await matrix_mock.wait_synced("letta", asked)
    stop.set()
    async with asyncio.timeout(5):
        assert await relay == 1
    assert [r["content"]["body"] for r in answers(matrix_mock, rooms["Ada"])] == ["late"]
    saved = RelayStore(fuzz_context.workdir).load()
    assert saved.outbox == {}
    assert saved.is_handled(asked)


async def test_a_refused_typing_off_stops_the_run_and_the_next_one_turns_it_off(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    # Typing on passes; typing off is refused (found by the fuzzer: the notice stayed on).
    matrix_mock.inject("setTyping", status=400, after=1)
    with pytest.raises(ApiError):
        await relay_against(fuzz_context)
    assert matrix_mock.world.matrix.typing_users(rooms["Ada"]) != []
    assert await relay_against(fuzz_context) == 0
    assert [r["content"]["body"] for r in answers(matrix_mock, rooms["Ada"])] == ["echo: hello"]
    assert matrix_mock.world.matrix.typing_users(rooms["Ada"]) == []


@pytest.mark.parametrize(
    ("flush_delay", "writes"),
    [
        # The next sync comes at once: its batch (or the run's end) carries the handled mark and the token.
        (60.0, 2),
        # No waiting: the handled mark with the batch's token is written while the next sync waits, and the
        # token of that empty sync (it moved past the reply) as the run ends.
        (0.0, 3),
    ],
)
async def test_a_turn_writes_the_state_once_before_its_reply_and_its_marks_with_the_next_write(
    letta_mock: LettaMock, matrix_mock: MatrixMock, fuzz_context: FuzzContext, flush_delay: float, writes: int
) -> None:
    letta_mock.add_agent("Ada")
    rooms = await provisioned(fuzz_context, matrix_mock, ["Ada"])
    asked = say(matrix_mock.world, rooms["Ada"], matrix_mock.user_id(PERSON), "hello")
    made: list[Relay] = []

    class Counted(Relay):
        async def start(self) -> None:
            made.append(self)
            self.flush_delay = flush_delay
            await super().start()

    assert await relay_against(fuzz_context, relay_class=Counted) == 1
    # The outbox before the reply, then the handled mark and the token.
    assert made[0].store.writes == writes
    assert len(answers(matrix_mock, rooms["Ada"])) == 1
    assert RelayStore(fuzz_context.workdir).load().is_handled(asked)


def test_a_room_found_after_a_kill_keeps_only_the_new_space_as_parent() -> None:
    """Found by the relay fuzzer (a CI run): the run dies after its agent room is made with the space as
    parent but before it is recorded; the next run, told by a 403 that the admin is not in that space, makes
    another. The room it then finds by its marker must lose the first parent, not carry both."""
    plan = Plan(
        agents=("Ada", "Bob"),
        faults=(
            FaultSpec("getRoomStateWithKey", status=403, body={"errcode": "M_FORBIDDEN"}, has_body=True),
        ),
        said=(Said(room=0, speaker=PLAN_PERSON, text="hello"),),
        kills=(12,),
    )
    result = fuzz(load_target("letta_matrix_reference.bridge.target:fuzz_relay"), replay=plan, progress=False)
    assert result.failure is None, result.failure and result.failure.problems


def test_a_room_whose_parent_was_removed_by_a_killed_run_gets_one_again() -> None:
    """Found by the relay fuzzer (a CI rehearsal): a run moves the room to a new space, removes the old
    parent and dies before putting the new one; the next run, back on the old space, must not trust the
    record that the room still names it (it named nothing: a room with no parent)."""
    no_agents = FaultSpec("listAgents", 200, variant="bare array", body=[], has_body=True)
    plan = Plan(
        agents=("Ada",),
        warm=True,
        faults=(
            no_agents,
            dataclasses.replace(no_agents, after=1),
            FaultSpec("getRoomStateWithKey", 403, body={"errcode": "M_FORBIDDEN"}, has_body=True, times=2),
        ),
        said=(Said(room=0, speaker=PLAN_PERSON, text="hello"),),
        kills=(1, 11),
    )
    result = fuzz(load_target("letta_matrix_reference.bridge.target:fuzz_relay"), replay=plan, progress=False)
    assert result.failure is None, result.failure and result.failure.problems
