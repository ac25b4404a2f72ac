from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from contracts.profiles import load_profile
from tests.support import TIMEOUT

pytest_plugins = ["pytester"]
load_profile()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for one test; every call through it is bounded by TIMEOUT."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session
