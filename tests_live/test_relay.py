"""The reference bridge's relay against real Synapse and real Letta 0.11.7 (its agent answering through the
loopback fake LLM): a person's message in the agent's room gets exactly one reply, from the agent's Matrix
user, in that room; a relay killed mid-turn and started again (a new `Bridge` on the same data directory,
as a new process would be) neither loses the turn nor repeats it. Every wait is on an event (the relay's
or the person's long-poll, a Letta turn), bounded by a timeout."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from bench.relay import Person, join_person
from letta_matrix_reference.bridge import relay as relay_module
from letta_matrix_reference.bridge import relay_events
from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.relay import Relay
from letta_matrix_reference.bridge.relay_events import PART_KEY, Incoming
from letta_matrix_reference.bridge.sync import Bridge
from letta_matrix_reference.bridge.users import agent_localpart
from letta_matrix_reference.live.letta import create_agent
from tests_live.conftest import Homeserver, Letta

TIMEOUT = aiohttp.ClientTimeout(total=60)
TURN_S = 120  # a relay run (one Letta turn on a shared machine, and the posting) ends well within this


class Killed(BaseException):
    """The relay's process dying at a checkpoint (not an Exception: nothing in the relay catches it)."""


def killer(point: str) -> Any:
    async def checkpoint(at: str, message: Incoming) -> None:
        if at == point:
            raise Killed(at)

    return checkpoint


@pytest.fixture(scope="module")
def agent(letta: Letta) -> Iterator[str]:
    """An agent wired to the fake LLM (echoes what it is told), deleted afterwards."""
    made = asyncio.run(create_agent(letta.info, f"relay-{secrets.token_hex(4)}", llm_url=letta.llm.url))
    yield str(made["id"])
    asyncio.run(_delete_agent(letta, str(made["id"])))


async def _delete_agent(letta: Letta, agent: str) -> None:
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.delete(f"{letta.url}/v1/agents/{agent}", headers=letta.info.headers) as answer,
    ):
        assert answer.status == 200


@pytest.fixture
async def room(bridge_config: BridgeConfig, agent: str) -> str:
    """The agent's room, provisioned by the session's bridge."""
    async with Bridge(bridge_config) as bridge:
        report = await bridge.sync_once()
        assert report.failed == []
        record = bridge.state.agents[agent]
    assert record.registered
    assert record.room_id is not None
    return record.room_id


@pytest.fixture
async def person(synapse: Homeserver, room: str) -> AsyncIterator[Person]:
    """A person (made with the admin API, a new one per test) who has joined the agent's room."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        yield await join_person(
            http,
            synapse.url,
            synapse.admin_token,
            str(synapse.server_name),
            [room],
            localpart=f"relay-person-{secrets.token_hex(4)}",
        )


async def _replies(person: Person, room: str, asked: str) -> list[dict[str, Any]]:
    """Every event in the room that answers `asked` (the room's recent history, as the person sees it)."""
    async with person.http.get(
        f"{person.url}/_matrix/client/v3/rooms/{quote(room)}/messages",
        params={"dir": "b", "limit": "100"},
        headers=person.headers,
    ) as answer:
        assert answer.status == 200, await answer.text()
        events: list[dict[str, Any]] = (await answer.json())["chunk"]
    return [
        event
        for event in events
        if event["type"] == "m.room.message"
        and event["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == asked
    ]


async def _asked_letta(letta: Letta, agent: str, text: str) -> int:
    """How many times `text` reached the agent as a user message (Letta's own history)."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(
            f"{letta.url}/v1/agents/{agent}/messages", params={"limit": "1000"}, headers=letta.info.headers
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
        history: list[dict[str, Any]] = await answer.json()
    return sum(
        1 for m in history if m.get("message_type") == "user_message" and text in str(m.get("content"))
    )


async def test_a_persons_message_gets_exactly_one_reply_from_its_agent(
    bridge_config: BridgeConfig, letta: Letta, agent: str, room: str, person: Person
) -> None:
    async with Bridge(bridge_config) as bridge:
        relay = Relay(bridge)
        stop = asyncio.Event()
        relaying = asyncio.ensure_future(relay.run(stop, forever=True))
        try:
            asked = await person.send(room, "hello from a person")
            async with asyncio.timeout(TURN_S):
                await person.wait_for({asked}, deadline=None)
        finally:
            stop.set()
            async with asyncio.timeout(TURN_S):
                await relaying  # a turn under way is finished first
    [reply] = await _replies(person, room, asked)
    assert reply["sender"] == f"@{agent_localpart(agent)}:{bridge_config.server_name}"
    assert reply["content"]["body"] == "echo: hello from a person"
    assert reply["content"][PART_KEY] == 0
    assert relay.turns == 1
    assert await _asked_letta(letta, agent, "hello from a person") == 1


@pytest.mark.parametrize("point", ["answered", "posted"])
async def test_a_relay_killed_mid_turn_and_restarted_neither_loses_nor_repeats_it(
    bridge_config: BridgeConfig, letta: Letta, agent: str, room: str, person: Person, point: str
) -> None:
    """Killed once Letta's answer is saved but before it is posted ("answered"), or once it is posted but
    before the message is marked handled ("posted"): the next process posts it (again, under the same
    transaction id, which real Synapse answers with the first event) and never asks Letta again."""
    text = f"restart at {point}"
    async with Bridge(bridge_config) as bridge:
        relay = Relay(bridge, checkpoint=killer(point))
        asked = await person.send(room, text)
        with pytest.raises(Killed):
            async with asyncio.timeout(TURN_S):
                await relay.run(forever=True)  # the long-poll wakes on the message; the turn dies
    assert relay.turns == 1
    async with Bridge(bridge_config) as bridge:
        restarted = Relay(bridge)
        async with asyncio.timeout(TURN_S):
            await restarted.run()  # until a sync brings nothing more to answer
    assert restarted.turns == 0
    async with asyncio.timeout(TURN_S):
        await person.wait_for({asked}, deadline=None)
    replies = await _replies(person, room, asked)
    assert [r["content"]["body"] for r in replies] == [f"echo: {text}"]
    assert replies[0]["sender"] == f"@{agent_localpart(agent)}:{bridge_config.server_name}"
    assert await _asked_letta(letta, agent, text) == 1


async def test_more_messages_than_a_sync_holds_are_all_answered_once(
    bridge_config: BridgeConfig,
    letta: Letta,
    agent: str,
    room: str,
    person: Person,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real Synapse's limited timeline and its /messages read back to a /sync token (`to`): with a window
    of 2 and pages of 2, six messages sent while no relay runs make a gap of two pages and more."""
    monkeypatch.setattr(relay_module, "TIMELINE_LIMIT", 2)
    monkeypatch.setattr(relay_events, "GAP_PAGE_SIZE", 2)
    async with Bridge(bridge_config) as bridge, asyncio.timeout(TURN_S):
        await Relay(bridge).run()  # the relay's sync token is now past everything said before
    texts = [f"gap {n}" for n in range(6)]
    asked = [await person.send(room, text) for text in texts]
    async with Bridge(bridge_config) as bridge:
        relay = Relay(bridge)
        async with asyncio.timeout(TURN_S * len(texts)):
            await relay.run()
    assert relay.turns == len(texts)
    for event_id, text in zip(asked, texts, strict=True):
        replies = await _replies(person, room, event_id)
        assert [r["content"]["body"] for r in replies] == [f"echo: {text}"]
        assert await _asked_letta(letta, agent, text) == 1
