from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

# httpx imports httpcore on first use and keeps a map of its exception classes; a pytester in-process run
# that first imports it removes it from sys.modules afterwards, so a later import made new classes the map
# no longer knew (an unmapped httpcore.RemoteProtocolError in another test). Imported here, it stays.
import httpcore  # noqa: F401
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from contracts.harness.fuzz import FuzzContext
from contracts.profiles import load_profile
from letta_matrix_reference.bridge import SyncReport
from letta_matrix_reference.bridge.target import sync_against
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import Sleeps
from tests.support import TIMEOUT

pytest_plugins = ["pytester"]
load_profile()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for one test; every call through it is bounded by TIMEOUT."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """Where a bridge keeps its mapping: in memory (tmpfs) when the machine has one. The bridge fsyncs
    the file (and its directory) several times a sync; on a disk that is most of a small test's time."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path / "bridge"
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="bridge-test-") as directory:
        yield Path(directory) / "bridge"


@pytest.fixture
def fuzz_context(letta_mock: LettaMock, matrix_mock: MatrixMock, data_dir: Path) -> FuzzContext:
    """What the fuzz runner would hand the bridge's target for these mocks, with `data_dir` as its workdir."""
    # Imported here: the runner brings in the strategies, which Hypothesis warns against building while
    # conftest files load.
    from contracts.harness.fuzz.runner import context_for

    return context_for(letta_mock.world, letta_mock.url, matrix_mock.url, data_dir)


@pytest.fixture
def bridge_sync(fuzz_context: FuzzContext, sleeps: Sleeps) -> Callable[..., Awaitable[SyncReport]]:
    """One sync, as one `python -m letta_matrix_reference.bridge sync --once` would do it (same data dir
    every time)."""

    async def sync(**settings: Any) -> SyncReport:
        return await sync_against(fuzz_context, sleep=sleeps, **settings)

    return sync


@pytest.fixture
async def fake() -> AsyncIterator[Callable[[web.Application], Any]]:
    """Serve a hand-made aiohttp app on 127.0.0.1; returns its base URL."""
    servers: list[TestServer] = []

    async def serve(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield serve
    for server in servers:
        await server.close()


@pytest.fixture(params=["0.11.7", "0.16.8"])
def letta(request: pytest.FixtureRequest, letta_mock: LettaMock) -> Iterator[LettaMock]:
    """The Letta mock answering as each release (the world is rebuilt for the version, then restored)."""
    config = letta_mock.world.config
    config.letta_version = request.param
    letta_mock.world.reset()
    yield letta_mock
    config.letta_version = "0.11.7"
    letta_mock.world.reset()
