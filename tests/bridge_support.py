"""What the bridge tests share: a stand-in for asyncio.sleep, and readers of the bridge's mapping and the
mock's rooms (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from contracts.harness.fuzz import FuzzContext
from letta_matrix_reference.bridge import SyncReport
from letta_matrix_reference.bridge.http import RetryPolicy
from letta_matrix_reference.bridge.letta import LettaClient
from letta_matrix_reference.bridge.matrix import MatrixHomeserver
from letta_matrix_reference.bridge.rooms import ROOM_MARKER
from letta_matrix_reference.bridge.store import MAPPING_FILE
from letta_matrix_reference.bridge.target import check_converged, convergence_problems
from letta_matrix_reference.bridge.users import agent_localpart
from mockgen.pytest_plugin import MatrixMock


class Sleeps:
    """Stands in for asyncio.sleep: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


Run = Callable[..., Awaitable[SyncReport]]
CREATIONS = ("register", "createRoom", "inviteUser", "adminPutUser")
TIMEOUT = 10.0  # the request timeout of these syncs (as the mock target sets it)
ADMIN, BOT = "@admin:matrix.test", "@letta:matrix.test"


def mapping(data_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((data_dir / MAPPING_FILE).read_text())
    return loaded


def leftovers(data_dir: Path) -> list[str]:
    return [path.name for path in data_dir.iterdir() if path.name.endswith(".tmp")]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def rooms_of(matrix_mock: MatrixMock) -> dict[str, dict[str, Any]]:
    return {room["room_id"]: room for room in matrix_mock.snapshot()["rooms"]}


def converged(matrix_mock: MatrixMock, fuzz_context: FuzzContext) -> None:
    """The world is as promised, and the mapping agrees with it."""
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context) == []
    assert check_converged(matrix_mock.snapshot(), fuzz_context) == []


def forget_room(data_dir: Path, agent_id: str) -> str:
    """The bridge crashed between createRoom and saving its answer: the mapping does not know the room."""
    path = data_dir / MAPPING_FILE
    saved = json.loads(path.read_text())
    room_id: str = saved["agents"][agent_id]["room_id"]
    saved["agents"][agent_id].update(room_id=None, room_name=None, space_parent=None, joined=[])
    path.write_text(json.dumps(saved))
    return room_id


def half_made_room(matrix_mock: MatrixMock, agent_id: str) -> str:
    """A room the agent's user made with the bridge's marker and nothing else: no name, no invites, no
    parent, as a createRoom the server stopped working on midway would leave it."""
    store = matrix_mock.world.matrix
    user = store.user_by_name(agent_localpart(agent_id))
    return store.create_room(user, {"preset": "private_chat", "creation_content": {ROOM_MARKER: agent_id}})


def spaces_in(matrix_mock: MatrixMock) -> list[str]:
    return [room["room_id"] for room in matrix_mock.snapshot()["rooms"] if room["is_space"]]


# The clients as the client tests build them: a short timeout, four attempts, no real sleeps.
CLIENT_TIMEOUT = 5.0


def policy(attempts: int = 4, base: float = 0.5, cap: float = 30.0) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, backoff_base=base, backoff_cap=cap)


def letta_client(url: str, token: str, sleeps: Sleeps, **kw: Any) -> LettaClient:
    return LettaClient(
        url, token, timeout=CLIENT_TIMEOUT, retry=policy(), sleep=sleeps, rng=random.Random(1), **kw
    )


def homeserver(url: str, sleeps: Sleeps, **kw: Any) -> MatrixHomeserver:
    settings: dict[str, Any] = {
        "timeout": CLIENT_TIMEOUT,
        "retry": policy(),
        "sleep": sleeps,
        "rng": random.Random(1),
    }
    settings.update(kw)
    return MatrixHomeserver(url, **settings)
