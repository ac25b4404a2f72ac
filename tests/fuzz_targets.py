"""Tiny fuzz targets for the fuzzer's own tests: one that copes, one with a planted bug, one that fails on
every documented error, one that calls nothing, one that breaks the contract on the envelope format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from contracts.harness.fuzz import fuzz_target
from mockgen.world import DEFAULT_LETTA_TOKEN

TIMEOUT = aiohttp.ClientTimeout(total=5)


async def _pages(letta_url: str, *, buggy: bool) -> list[Any]:
    """Every agent, page by page; gives up quietly on any error answer or dropped connection."""
    agents: list[Any] = []
    headers = {"Authorization": f"Bearer {DEFAULT_LETTA_TOKEN}"}
    after: str | None = None
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for _ in range(20):
            params = {"limit": "2", **({"after": after} if after else {})}
            try:
                async with session.get(f"{letta_url}/v1/agents/", params=params, headers=headers) as response:
                    if response.status != 200:
                        return agents
                    body = await response.json()
            except aiohttp.ClientError:
                return agents
            # The planted bug: the envelope's list is under "data", not "agents".
            envelope_key = "agents" if buggy else "data"
            page = body if isinstance(body, list) else body[envelope_key]
            if not page:
                return agents
            agents.extend(page)
            after = page[-1]["id"]
    return agents


@fuzz_target()
async def lists_agents(letta_url: str, matrix_url: str, workdir: Path) -> None:
    await _pages(letta_url, buggy=False)


@fuzz_target()
async def crashes_on_envelope(letta_url: str, matrix_url: str, workdir: Path) -> None:
    await _pages(letta_url, buggy=True)


@fuzz_target()
async def raises_on_errors(letta_url: str, matrix_url: str, workdir: Path) -> None:
    """Lists the agents once and raises on any error answer: every documented error of listAgents fails."""
    headers = {"Authorization": f"Bearer {DEFAULT_LETTA_TOKEN}"}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"{letta_url}/v1/agents/", headers=headers) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"listAgents answered {response.status}")


@fuzz_target()
async def calls_nothing(letta_url: str, matrix_url: str, workdir: Path) -> None:
    """Exercises nothing, so it has nothing to cover."""


@fuzz_target()
async def bad_query_on_envelope(letta_url: str, matrix_url: str, workdir: Path) -> None:
    """Lists the agents; when they come as an envelope, asks again with a page size that is not an integer,
    which the contract forbids (and copes with the 422)."""
    headers = {"Authorization": f"Bearer {DEFAULT_LETTA_TOKEN}"}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{letta_url}/v1/agents/", headers=headers) as response:
            body = await response.json()
        if isinstance(body, dict):
            params = {"limit": "many"}
            async with session.get(f"{letta_url}/v1/agents/", params=params, headers=headers) as response:
                await response.read()
