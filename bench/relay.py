"""The relay's figures through the mock (`mockgen serve`, a separate process): latency from a person's send
to the agent's reply visible in the person's own /sync (p50/p99, one message at a time), and throughput
with `rooms` agent rooms (a message in every room at once, several rounds, until every reply is seen).

The bridge provisions the rooms first; the person is made with the admin API, invited by the admin and
joins every room. The relay (long-polling, `relay` as the CLI runs it) shares the event loop with the
person; its state file is fsynced as in production (a temporary directory on the machine's disk).

`relay_figures_real` measures the same against a real Synapse and a real Letta 0.11.7 whose agents answer
through the loopback fake LLM (fewer rounds: a real turn takes hundreds of milliseconds). `join_person` and
`Person` also serve the live suite (`tests_live/test_relay.py`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bench import servers
from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.relay import Relay
from letta_matrix_reference.bridge.sync import Bridge
from mockgen.server import LOOP_FACTORY
from mockgen.world import DEFAULT_LETTA_TOKEN

CLIENT = "/_matrix/client/v3"
PERSON, PASSWORD = "bench-person", "bench person password"
STATE_DIR: str | None = None
FILTER = json.dumps({"room": {"timeline": {"limit": 100}, "state": {"lazy_load_members": True}}})


class Person:
    """A person with a Matrix session: sends, and watches replies arrive through its own long-poll."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url = http, url
        self.headers = {"Authorization": f"Bearer {token}"}
        self.since: str | None = None
        self.replies: dict[str, float] = {}  # the event a reply answers: when the person saw it
        self.notices: set[str] = set()  # the events answered by a notice (the agent could not answer)
        self._txn = 0

    async def send(self, room_id: str, body: str) -> str:
        self._txn += 1
        path = f"{CLIENT}/rooms/{quote(room_id)}/send/m.room.message/bench-{self._txn}"
        async with self.http.put(
            self.url + path, json={"msgtype": "m.text", "body": body}, headers=self.headers
        ) as answer:
            event_id: str = (await answer.json())["event_id"]
            return event_id

    async def sync(self, timeout_ms: int) -> None:
        params = {"filter": FILTER, "timeout": str(timeout_ms)}
        if self.since is not None:
            params["since"] = self.since
        async with self.http.get(f"{self.url}{CLIENT}/sync", params=params, headers=self.headers) as answer:
            body = await answer.json()
        seen = time.perf_counter()
        self.since = body["next_batch"]
        for room in body.get("rooms", {}).get("join", {}).values():
            for event in room.get("timeline", {}).get("events", []):
                reply = event.get("content", {}).get("m.relates_to", {}).get("m.in_reply_to", {})
                if "event_id" in reply:
                    self.replies.setdefault(reply["event_id"], seen)
                    if event["content"].get("msgtype") == "m.notice":
                        self.notices.add(reply["event_id"])

    async def wait_for(self, event_ids: set[str], deadline: float | None) -> None:
        """Until a reply to each of `event_ids` is seen (`deadline`: a `perf_counter` time, or None when
        the caller bounds the wait)."""
        while not event_ids <= self.replies.keys():
            if deadline is not None and time.perf_counter() > deadline:
                raise RuntimeError(f"{len(event_ids - self.replies.keys())} messages got no reply in time")
            await self.sync(1000)


async def _admin_token(http: aiohttp.ClientSession, url: str, admin: tuple[str, str]) -> str:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": admin[0]}}
    async with http.post(f"{url}{CLIENT}/login", json={**body, "password": admin[1]}) as answer:
        token: str = (await answer.json())["access_token"]
        return token


async def join_person(
    http: aiohttp.ClientSession,
    url: str,
    admin_token: str,
    server_name: str,
    rooms: list[str],
    *,
    localpart: str = PERSON,
) -> Person:
    """A person made with the admin API, invited by the admin into `rooms` and joined; its sync starts
    after the joins (replies from here on)."""
    user_id = f"@{localpart}:{server_name}"
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with http.put(
        f"{url}/_synapse/admin/v2/users/{quote(user_id)}", json={"password": PASSWORD}, headers=admin
    ) as answer:
        answer.raise_for_status()
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}}
    async with http.post(f"{url}{CLIENT}/login", json={**login, "password": PASSWORD}) as answer:
        person = Person(http, url, (await answer.json())["access_token"])
    for room_id in rooms:
        room = quote(room_id)
        async with http.post(
            f"{url}{CLIENT}/rooms/{room}/invite", json={"user_id": user_id}, headers=admin
        ) as answer:
            answer.raise_for_status()
        async with http.post(f"{url}{CLIENT}/rooms/{room}/join", json={}, headers=person.headers) as answer:
            answer.raise_for_status()
    await person.sync(0)
    return person


async def _measure(
    running: servers.Running, letta_token: str, rooms: int, latency_rounds: int, rounds: int
) -> dict[str, Any]:
    assert running.letta_url is not None
    assert running.admin is not None
    with tempfile.TemporaryDirectory(prefix="bench-relay-", dir=STATE_DIR) as workdir:
        config = BridgeConfig(
            letta_url=running.letta_url,
            letta_token=letta_token,
            matrix_url=running.url,
            server_name=running.server_name,
            admin_user=running.admin[0],
            admin_password=running.admin[1],
            bot_user="bench-relay-bot",
            bot_password="bench relay bot password",
            data_dir=Path(workdir),
            concurrency=32,
        )
        async with Bridge(config) as bridge, aiohttp.ClientSession() as http:
            report = await bridge.sync_once()
            if not report.ok or report.rooms_created != rooms:
                raise RuntimeError(f"the bridge did not provision the rooms: {report.summary()}")
            room_ids = [r.room_id for r in bridge.state.agents.values() if r.room_id is not None]
            token = await _admin_token(http, running.url, running.admin)
            person = await join_person(http, running.url, token, running.server_name, room_ids)
            stop = asyncio.Event()
            relay = Relay(bridge)
            relaying = asyncio.ensure_future(relay.run(stop, forever=True))
            try:
                latencies = []
                for n in range(latency_rounds):
                    started = time.perf_counter()
                    asked = await person.send(room_ids[n % len(room_ids)], f"latency {n}")
                    await person.wait_for({asked}, started + 30)
                    latencies.append((person.replies[asked] - started) * 1000)
                started = time.perf_counter()
                asked_all: set[str] = set()
                for n in range(rounds):
                    sent = await asyncio.gather(*(person.send(room, f"load {n}") for room in room_ids))
                    asked_all.update(sent)
                await person.wait_for(asked_all, started + 300)
                seconds = time.perf_counter() - started
            finally:
                stop.set()
                await relaying
    latencies.sort()
    return {
        "rooms": rooms,
        "latency_rounds": latency_rounds,
        "rounds": rounds,
        "latency_p50_ms": round(statistics.median(latencies), 2),
        "latency_p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
        "messages": len(asked_all),
        # Answered "could not answer" after the retries (real Letta on SQLite fails some concurrent turns).
        "notices": len(asked_all & person.notices),
        "messages_per_s": round(len(asked_all) / seconds, 1),
        "turns": relay.turns,
    }


def relay_figures(rooms: int = 100, latency_rounds: int = 200, rounds: int = 5) -> dict[str, Any]:
    """Latency (one message at a time, `latency_rounds` of them) and throughput (`rounds` messages in every
    one of `rooms` rooms) of the relay through the mock."""
    with servers.mock(agents=rooms) as running, asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
        return runner.run(_measure(running, DEFAULT_LETTA_TOKEN, rooms, latency_rounds, rounds))


def relay_figures_real(rooms: int = 100, latency_rounds: int = 50, rounds: int = 1) -> dict[str, Any]:
    """The same figures against a real Synapse and a real Letta 0.11.7 whose `rooms` agents answer through
    the loopback fake LLM (`live.fakellm`): fewer rounds, a real turn costing far more than the mock's."""
    from letta_matrix_reference.live.fakellm import FakeLLM
    from letta_matrix_reference.live.letta import LettaServer, create_agent

    async def agents(letta: Any, llm_url: str) -> None:
        made = asyncio.Semaphore(8)  # Letta on SQLite: a few creations at a time

        async def one(n: int) -> None:
            async with made:
                await create_agent(letta, f"bench relay {n}", llm_url=llm_url)

        await asyncio.gather(*(one(n) for n in range(rooms)))

    with servers.synapse() as synapse, FakeLLM() as llm, LettaServer() as letta:
        asyncio.run(agents(letta, llm.url))
        running = dataclasses.replace(synapse, letta_url=letta.url)
        with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
            return runner.run(_measure(running, letta.token, rooms, latency_rounds, rounds))


if __name__ == "__main__":
    print(json.dumps({"mock": relay_figures(), "real": relay_figures_real()}, indent=2))
