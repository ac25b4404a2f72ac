"""Real servers for the live suite (`make live`): a Synapse and a Letta 0.11.7, installed into cached
virtualenvs, started on 127.0.0.1 for the session and stopped by PID (see `live/`). Servers already
running can be given instead, by URL and credentials in the environment:
`CONTRACTS_LIVE_MATRIX` + `CONTRACTS_LIVE_MATRIX_ADMIN_TOKEN`, `CONTRACTS_LIVE_LETTA` +
`CONTRACTS_LIVE_LETTA_TOKEN`. Letta's agents that chat talk to the project's loopback fake LLM
(`live.fakellm`), started here; a Letta given by URL must be able to reach 127.0.0.1 (the same machine).
Reports are written to `reports/live/` for a person to read."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from contracts.profiles import load_profile
from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.live.fakellm import FakeLLM
from letta_matrix_reference.live.letta import LettaInfo, LettaServer, create_agent
from letta_matrix_reference.live.synapse import SynapseServer

load_profile()

REPORTS = Path(__file__).resolve().parent.parent / "reports" / "live"
SEEDED_AGENTS = ("live agent one", "live agent two", "live agent three")
# Letta 0.11.7 refuses such a name on creation but not on a rename, so agents can carry it.
RENAMED_TO = "Ünïcödé agent ✓ שלום"


@dataclass(frozen=True)
class Homeserver:
    url: str
    admin_token: str
    admin_user: str | None = None  # the localpart, when the suite started the server itself
    admin_password: str | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class Letta:
    url: str
    token: str
    started_here: bool
    llm: FakeLLM  # what agents made with `llm_wiring(llm.url)` talk to

    @property
    def info(self) -> LettaInfo:
        return LettaInfo(self.url, 0, self.token)


@pytest.fixture(scope="session")
def reports() -> Path:
    REPORTS.mkdir(parents=True, exist_ok=True)
    return REPORTS


@pytest.fixture(scope="session")
def synapse() -> Iterator[Homeserver]:
    url = os.environ.get("CONTRACTS_LIVE_MATRIX")
    if url:
        yield Homeserver(url, os.environ["CONTRACTS_LIVE_MATRIX_ADMIN_TOKEN"])
        return
    with SynapseServer() as info:
        yield Homeserver(
            info.url,
            info.admin_token,
            admin_user=info.admin_user_id.split(":", 1)[0].lstrip("@"),
            admin_password=info.admin_password,
            server_name=info.server_name,
        )


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeLLM]:
    with FakeLLM() as llm:
        yield llm


@pytest.fixture(scope="session")
def letta(fake_llm: FakeLLM) -> Iterator[Letta]:
    url = os.environ.get("CONTRACTS_LIVE_LETTA")
    if url:
        yield Letta(url, os.environ["CONTRACTS_LIVE_LETTA_TOKEN"], started_here=False, llm=fake_llm)
        return
    with LettaServer() as info:
        asyncio.run(_seed(info))
        yield Letta(info.url, info.token, started_here=True, llm=fake_llm)


async def _seed(info: LettaInfo) -> None:
    agents = [await create_agent(info, name) for name in SEEDED_AGENTS]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.patch(
            f"{info.url}/v1/agents/{agents[-1]['id']}", json={"name": RENAMED_TO}, headers=info.headers
        ) as answer,
    ):
        answer.raise_for_status()


@pytest.fixture(scope="session")
def bridge_config(
    synapse: Homeserver, letta: Letta, tmp_path_factory: pytest.TempPathFactory
) -> BridgeConfig:
    """One bridge for the session (its data directory holds the agent users' passwords, so a second
    bridge could not log them in): the provisioning test runs it first (test_live.py), the relay
    reuses it."""
    if synapse.admin_password is None or not letta.started_here:
        pytest.skip("needs the servers this suite starts (it registers users and rooms for every agent)")
    return BridgeConfig(
        letta_url=letta.url,
        letta_token=letta.token,
        matrix_url=synapse.url,
        server_name=str(synapse.server_name),
        admin_user=str(synapse.admin_user),
        admin_password=synapse.admin_password,
        bot_user="letta-bridge-bot",
        bot_password="bot password for the live suite",
        data_dir=tmp_path_factory.mktemp("bridge"),
        request_timeout=30.0,
    )
