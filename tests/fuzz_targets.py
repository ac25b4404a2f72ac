"""Tiny fuzz targets for the fuzzer's own tests: one that copes, one with a planted bug, one that fails on
every documented error, one that calls nothing, one that breaks the contract on the envelope format, one
that logs in with the accounts it is handed, one that needs the server it was written for, one that sleeps
between retries, one that may never return, and one whose parameters make no target.

`lists_agents` keeps the plain form `(letta_url, matrix_url, workdir)`, which knows only the URLs (so it
takes the mock's default token from mockgen); the others take the `FuzzContext`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from contracts.harness.fuzz import FuzzContext, fuzz_target
from mockgen.world import DEFAULT_LETTA_TOKEN

TIMEOUT = aiohttp.ClientTimeout(total=5)


async def _pages(letta_url: str, token: str, *, buggy: bool) -> list[Any]:
    """Every agent, page by page; gives up quietly on any error answer or dropped connection."""
    agents: list[Any] = []
    headers = {"Authorization": f"Bearer {token}"}
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
    await _pages(letta_url, DEFAULT_LETTA_TOKEN, buggy=False)


@fuzz_target()
async def crashes_on_envelope(context: FuzzContext) -> None:
    await _pages(context.letta_url, context.letta_token, buggy=True)


@fuzz_target()
async def raises_on_errors(context: FuzzContext) -> None:
    """Lists the agents once and raises on any error answer: every documented error of listAgents fails."""
    headers = {"Authorization": f"Bearer {context.letta_token}"}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"{context.letta_url}/v1/agents/", headers=headers) as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"listAgents answered {response.status}")


@fuzz_target()
async def calls_nothing(context: FuzzContext) -> None:
    """Exercises nothing, so it has nothing to cover."""


@fuzz_target()
async def bad_query_on_envelope(context: FuzzContext) -> None:
    """Lists the agents; when they come as an envelope, asks again with a page size that is not an integer,
    which the contract forbids (and copes with the 422)."""
    headers = {"Authorization": f"Bearer {context.letta_token}"}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(f"{context.letta_url}/v1/agents/", headers=headers) as response:
            body = await response.json()
        if isinstance(body, dict):
            params = {"limit": "many"}
            url = f"{context.letta_url}/v1/agents/"
            async with session.get(url, params=params, headers=headers) as response:
                await response.read()


class Refused(Exception):
    """A login or listing that did not answer 200: expected while faults are installed, a failure after."""


def _accounts_exist(snapshot: Mapping[str, Any], context: FuzzContext) -> list[str]:
    users = {user["user_id"] for user in snapshot["users"]}
    return [
        f"the mock has no user {user_id}"
        for user_id in (context.user_id(context.admin), context.user_id(context.bot))
        if user_id not in users
    ]


@fuzz_target(expected_exceptions=(Refused,), check_converged=_accounts_exist)
async def logs_in(context: FuzzContext) -> None:
    """Logs in as the admin and the bot it is handed and lists the agents with its token: credentials the
    mock does not know make even the run without faults raise."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        try:
            for account in (context.admin, context.bot):
                login = {"type": "m.login.password", "user": account.username, "password": account.password}
                url = f"{context.matrix_url}/_matrix/client/v3/login"
                async with session.post(url, json=login) as response:
                    if response.status != 200:
                        raise Refused(f"login as {account.username} answered {response.status}")
            headers = {"Authorization": f"Bearer {context.letta_token}"}
            async with session.get(f"{context.letta_url}/v1/agents/", headers=headers) as response:
                if response.status != 200:
                    raise Refused(f"listAgents answered {response.status}")
        except aiohttp.ClientError as exc:
            raise Refused(f"no answer: {exc}") from None


@fuzz_target()
async def needs_its_server(context: FuzzContext) -> None:
    """Written for `oculair.example` and an open Letta (no token): served anything else, even its first
    run without faults fails, which is the calibration."""
    if context.server_name != "oculair.example":
        raise RuntimeError(f"written for oculair.example, served {context.server_name}")
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"{context.letta_url}/v1/agents/") as response,
    ):
        if response.status != 200:
            raise RuntimeError(f"listAgents without a token answered {response.status}")


BACKOFF_SECONDS = 1.0
ATTEMPTS = 3


@fuzz_target()
async def backs_off(context: FuzzContext) -> None:
    """A client with real sleeps: asks for the agents three times, waiting a second after each answer, as a
    retry loop with a fixed backoff would."""
    for _ in range(ATTEMPTS):
        await _pages(context.letta_url, context.letta_token, buggy=False)
        await asyncio.sleep(BACKOFF_SECONDS)


async def takes_two(letta_url: str, matrix_url: str) -> None:
    """Neither form: a target takes one parameter or three."""


@fuzz_target()
async def never_returns(context: FuzzContext) -> None:
    """Lists the agents; with none, waits for one forever (by an event nobody sets)."""
    if not await _pages(context.letta_url, context.letta_token, buggy=False):
        await asyncio.Event().wait()
