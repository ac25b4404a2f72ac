"""What the bridge tests share: a stand-in for asyncio.sleep (its fixtures are in conftest.py)."""

from __future__ import annotations


class Sleeps:
    """Stands in for asyncio.sleep: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
