"""The fuzz runner's virtual clock (contracts/harness/fuzz/clock.py): idle waits are skipped, in order;
work in the loop's executor is waited for."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from contracts.harness.fuzz.clock import virtual_loop


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    virtual = virtual_loop()
    yield virtual
    virtual.close()


def test_sleeps_are_skipped_and_wake_in_the_order_of_their_deadlines(loop: asyncio.AbstractEventLoop) -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        woke.append((name, loop.time() - started))

    async def both() -> None:
        await asyncio.gather(sleeper("long", 120.0), sleeper("short", 60.0))

    started, wall = loop.time(), time.perf_counter()
    loop.run_until_complete(both())
    assert [name for name, _ in woke] == ["short", "long"]
    assert [round(at) for _, at in woke] == [60, 120]
    assert time.perf_counter() - wall < 60.0


def test_a_timeout_does_not_fire_while_the_executor_works(loop: asyncio.AbstractEventLoop) -> None:
    """A thread's work takes real time; jumping to the timeout meanwhile would time out what a real clock
    would not."""
    worked = threading.Event()

    def work() -> None:
        threading.Event().wait(0.05)  # the thread's own real work
        worked.set()

    loop.run_until_complete(asyncio.wait_for(asyncio.to_thread(work), 30.0))
    assert worked.is_set()
