"""The room the message-path tests act in (three users, two messages), and how they judge an answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from mockgen.pytest_plugin import MatrixMock
from mockgen.store.matrix import MatrixStore
from tests.support import Answer, call, register

V12_UNKNOWN = "!" + "a" * 43  # a well-formed room version 12 id no room has
NO_EVENT = "$doesnotexist000000000000000000000000000000000"


@dataclass
class Room:
    http: aiohttp.ClientSession
    mock: MatrixMock
    base: str
    alice: str  # the creator's token
    bob: str  # a member's token
    carol: str  # an outsider's token
    room_id: str
    e1: str  # alice's message
    e2: str  # bob's message

    async def req(
        self, method: str, path: str, token: str | None, body: Any = None, data: bytes | None = None
    ) -> Answer:
        return await call(self.http, method, f"{self.base}{path}", token=token, json_body=body, data=data)

    async def send(self, token: str, txn: str, content: dict[str, Any] | None = None) -> Answer:
        return await self.req(
            "PUT",
            f"/rooms/{self.room_id}/send/m.room.message/{txn}",
            token,
            content or {"msgtype": "m.text", "body": txn},
        )

    @property
    def store(self) -> MatrixStore:
        return self.mock.world.matrix


async def three_member_room(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Room:
    """A public room alice made and bob joined, carol outside it, and one message from each member."""
    base = f"{matrix_mock.url}/_matrix/client/v3"
    tokens = [(await register(http, matrix_mock.url, name)).body["access_token"] for name in "abc"]
    alice, bob, carol = tokens
    created = await call(http, "POST", f"{base}/createRoom", token=alice, json_body={"preset": "public_chat"})
    room_id = created.body["room_id"]
    assert (await call(http, "POST", f"{base}/join/{room_id}", token=bob, json_body={})).status == 200
    r = Room(http, matrix_mock, base, alice, bob, carol, room_id, "", "")
    r.e1 = (await r.send(alice, "e1")).body["event_id"]
    r.e2 = (await r.send(bob, "e2")).body["event_id"]
    return r


def answered(answer: Answer, status: int, errcode: str | None = None, error: str | None = None) -> None:
    assert answer.status == status, answer.body
    if errcode is None:
        assert answer.body == {}, "nio wants exactly {}"
    else:
        assert answer.errcode == errcode, answer.body
    if error is not None:
        assert answer.body["error"] == error
