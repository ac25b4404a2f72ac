"""Room history (GET /rooms/{roomId}/messages) over HTTP against the mock: pages back and forth, from a
sync's prev_batch, who may read, and every status and errcode Synapse 1.163 answers (the issue 13 probes of
real Synapse 1.163.2)."""

from __future__ import annotations

import aiohttp
import pytest

from mockgen.pytest_plugin import MatrixMock
from tests.support import Answer
from tests.sync_support import Pair, bodies, make_pair

pytestmark = pytest.mark.mock_lenient  # many requests here are bad on purpose


@pytest.fixture
async def pair(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> Pair:
    return await make_pair(http, matrix_mock)


async def messages(pair: Pair, room_id: str, token: str, **params: str) -> Answer:
    return await pair.req("GET", f"/rooms/{room_id}/messages", token, params=params)


async def test_messages_pages_back_and_forth(pair: Pair) -> None:
    room_id = await pair.room()
    for n in range(5):
        await pair.send(pair.alice, room_id, f"n{n}")
    back = (await messages(pair, room_id, pair.alice, dir="b", limit="2")).body
    assert bodies(back["chunk"]) == ["n4", "n3"]  # [3.1]
    assert {"room_id", "user_id", "age"} <= set(back["chunk"][0])
    more = (await messages(pair, room_id, pair.alice, dir="b", limit="2", **{"from": back["end"]})).body
    assert bodies(more["chunk"]) == ["n2", "n1"]  # [3.15]
    forth = (await messages(pair, room_id, pair.alice, dir="f", limit="3")).body
    assert forth["start"].startswith("s0_")
    assert forth["chunk"][0]["type"] == "m.room.create"
    default = (await messages(pair, room_id, pair.alice)).body
    assert default["chunk"][0]["type"] == "m.room.create"  # dir defaults to f [3.4]
    everything = (await messages(pair, room_id, pair.alice, dir="b", limit="1000")).body
    first = everything["chunk"][-1]
    assert first["type"] == "m.room.create"
    assert "end" in everything
    done = (await messages(pair, room_id, pair.alice, dir="b", **{"from": everything["end"]})).body
    assert done["chunk"] == []
    assert "end" not in done
    zero = (await messages(pair, room_id, pair.alice, dir="b", limit="0")).body
    assert zero["chunk"] == []
    to = (await messages(pair, room_id, pair.alice, dir="b", to=more["end"])).body
    assert bodies(to["chunk"]) == ["n4", "n3", "n2", "n1"]  # [3.25]
    typed = await messages(pair, room_id, pair.alice, dir="f", filter='{"types":["m.room.message"]}')
    assert bodies(typed.body["chunk"]) == ["n0", "n1", "n2", "n3", "n4"]
    # The limit counts matching events: the room's state events come first and do not use it up [3.32]
    only_messages = '{"types":["m.room.message"]}'
    three = await messages(pair, room_id, pair.alice, dir="f", limit="3", filter=only_messages)
    assert bodies(three.body["chunk"]) == ["n0", "n1", "n2"]
    after = (await messages(pair, room_id, pair.alice, dir="f", **{"from": three.body["end"]})).body
    assert bodies(after["chunk"]) == ["n3", "n4"]
    for falsy in ("[]", "{}", "null", "0"):  # JSON that is falsy is no filter [3.38]
        unfiltered = (await messages(pair, room_id, pair.alice, dir="b", limit="2", filter=falsy)).body
        assert bodies(unfiltered["chunk"]) == ["n4", "n3"], falsy


async def test_messages_from_a_sync_prev_batch(pair: Pair) -> None:
    room_id = await pair.room()
    for n in range(4):
        await pair.send(pair.alice, room_id, f"n{n}")
    synced = await pair.sync(pair.alice, filter={"room": {"timeline": {"limit": 1}}})
    prev = synced.body["rooms"]["join"][room_id]["timeline"]["prev_batch"]
    page = (await messages(pair, room_id, pair.alice, dir="b", limit="2", **{"from": prev})).body
    assert bodies(page["chunk"]) == ["n2", "n1"]  # [1.6, 3.23]


async def test_messages_access(pair: Pair) -> None:
    room_id = await pair.room()
    await pair.req("POST", f"/join/{room_id}", pair.bob, {})
    await pair.send(pair.alice, room_id, "before")
    await pair.req("POST", f"/rooms/{room_id}/leave", pair.bob, {})
    await pair.send(pair.alice, room_id, "after")
    back = (await messages(pair, room_id, pair.bob, dir="b")).body
    assert "after" not in bodies(back["chunk"])
    assert "before" in bodies(back["chunk"])
    forth = (await messages(pair, room_id, pair.bob, dir="f", limit="100")).body
    assert "after" in bodies(forth["chunk"])  # [3.49]
    other = await pair.room()
    refused = await messages(pair, other, pair.bob, dir="b")
    assert (refused.status, refused.errcode) == (403, "M_FORBIDDEN")  # [3.52]
    unknown = await messages(pair, "!" + "a" * 43, pair.bob)
    assert (unknown.status, unknown.errcode) == (403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"dir": "x"}, "M_INVALID_PARAM"),  # [3.6]
        ({"dir": "B"}, "M_INVALID_PARAM"),  # [3.7]
        ({"limit": "-1"}, "M_INVALID_PARAM"),  # [3.10]
        ({"limit": "abc"}, "M_INVALID_PARAM"),  # [3.11]
        ({"limit": "1.5"}, "M_INVALID_PARAM"),  # [3.12]
        ({"from": "garbage"}, "M_UNKNOWN"),  # [3.27]
        ({"to": "garbage"}, "M_UNKNOWN"),
        ({"filter": "{bad"}, "M_NOT_JSON"),
        ({"filter": "[1]"}, "M_NOT_JSON"),
    ],
)
async def test_messages_errors(pair: Pair, params: dict[str, str], errcode: str) -> None:
    room_id = await pair.room()
    answer = await messages(pair, room_id, pair.alice, **params)
    assert (answer.status, answer.errcode) == (400, errcode), answer
