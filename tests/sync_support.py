"""What the /sync and /messages tests share: two users on the Matrix mock (alice and bob) and their calls,
and a wait for a sync to be waiting."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from mockgen.pytest_plugin import MatrixMock
from tests.support import Answer, call, register


@dataclass
class Pair:
    http: aiohttp.ClientSession
    mock: MatrixMock
    base: str
    alice: str
    bob: str
    alice_id: str
    bob_id: str

    async def req(
        self, method: str, path: str, token: str | None, body: Any = None, params: Any = None
    ) -> Answer:
        return await call(self.http, method, f"{self.base}{path}", token=token, json_body=body, params=params)

    async def sync(self, token: str | None, **params: Any) -> Answer:
        query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
        return await self.req("GET", "/sync", token, params=query)

    async def room(self, **body: Any) -> str:
        answer = await self.req("POST", "/createRoom", self.alice, {"preset": "public_chat", **body})
        room_id: str = answer.body["room_id"]
        return room_id

    async def send(self, token: str, room_id: str, text: str) -> str:
        answer = await self.req(
            "PUT", f"/rooms/{room_id}/send/m.room.message/{text}", token, {"msgtype": "m.text", "body": text}
        )
        assert answer.status == 200, answer
        event_id: str = answer.body["event_id"]
        return event_id


async def make_pair(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Pair:
    answers = [await register(http, matrix_mock.url, name) for name in ("alice", "bob")]
    return Pair(
        http,
        matrix_mock,
        f"{matrix_mock.url}/_matrix/client/v3",
        answers[0].body["access_token"],
        answers[1].body["access_token"],
        answers[0].body["user_id"],
        answers[1].body["user_id"],
    )


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


async def until_waiting(mock: MatrixMock) -> None:
    """Until a sync waits on the world's wakeups: the loop runs the server too, so yield to it (no sleep)."""
    for _ in range(100_000):
        if mock.world.wakeups.waiting:
            return
        await asyncio.sleep(0)
    raise AssertionError("no sync is waiting")
