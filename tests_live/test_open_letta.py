"""An open Letta: a real Letta 0.11.7 started without LETTA_SERVER_SECURE (its default) and the mock with
`letta_token=None` get the same requests, with any token or none, and must answer the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from letta_matrix_reference.live.letta import LettaServer
from mockgen.server import MockServers
from mockgen.world import MockConfig, World

UNKNOWN_AGENT = "agent-00000000-0000-4000-8000-000000000000"
# (method, path, headers): every one answered without a password asked for.
REQUESTS = [
    ("GET", "/v1/health/", {}),
    ("GET", "/v1/agents/", {}),
    ("GET", "/v1/agents/", {"Authorization": "Bearer wrong"}),
    ("GET", "/v1/agents/", {"Authorization": "garbage"}),
    ("GET", "/v1/agents/", {"X-BARE-PASSWORD": "password nope"}),
    ("GET", "/v1/agents", {}),
    ("GET", f"/v1/agents/{UNKNOWN_AGENT}", {}),
    ("GET", f"/v1/agents/{UNKNOWN_AGENT}/messages", {}),
    ("GET", "/v1/no-such-route", {}),
    ("PUT", "/v1/agents/", {}),
]


@pytest.fixture(scope="module")
def open_letta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LettaServer(tmp_path_factory.mktemp("open-letta"), secure=False) as info:
        yield info.url


@pytest.fixture(scope="module")
def open_mock() -> Iterator[str]:
    servers = MockServers(World(MockConfig(letta_token=None)))
    servers.start()
    try:
        yield servers.endpoints.letta
    finally:
        servers.stop()


async def _answers(base: str) -> list[tuple[str, int, object]]:
    answers: list[tuple[str, int, object]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for method, path, headers in REQUESTS:
            async with session.request(
                method, f"{base}{path}", headers=headers, allow_redirects=False
            ) as answer:
                text = await answer.text()
                # A redirect names the host it was asked on: compare where it leads on that host.
                location = answer.headers.get("Location", "").replace(base, "")
                body = location or (await answer.json() if text else None)
                answers.append((f"{method} {path} {headers}", answer.status, body))
    return answers


async def test_an_open_mock_answers_as_an_open_letta(open_letta: str, open_mock: str, reports: Path) -> None:
    real, mock = await _answers(open_letta), await _answers(open_mock)
    lines = [f"{r[0]}: real {r[1]} {r[2]!r} / mock {m[1]} {m[2]!r}" for r, m in zip(real, mock, strict=True)]
    (reports / "open-letta.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert mock == real
    assert [status for _, status, _ in real].count(200) == 5  # health and four lists, whatever the token
