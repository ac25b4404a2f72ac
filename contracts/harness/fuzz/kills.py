"""Killing a target mid-run, as a crash would: when the mock receives the run's `after`-th request (and
before it acts on it), the target's task is cancelled, at the await where it waits for that answer; the
mock then goes on and acts on the request, which the dead target never hears of. What the target saved
by then is all its next run has."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from mockgen.faults import FaultTable

# How long the mock's thread waits for the kill to land; the target's loop is idle then (it waits for the
# mock's answer), so this only bounds a target that is not.
LANDING_SECONDS = 2.0


def killed_run(
    loop: asyncio.AbstractEventLoop,
    start: Callable[[], Awaitable[Any]],
    faults: FaultTable,
    after: int,
    bound: float,
) -> BaseException | None:
    """Run `start()` on `loop` until it ends, or is killed at its request number `after` (0: before it
    begins); the exception it raised (None when it ended or was killed)."""

    async def bounded() -> None:
        await asyncio.wait_for(start(), bound)

    task = loop.create_task(bounded())
    landed = threading.Event()
    arrived = 0

    def kill() -> None:
        task.cancel()
        landed.set()

    def arrival() -> None:
        # On the mock's thread, before it acts on the request: once the kill has landed, it goes on.
        nonlocal arrived
        arrived += 1
        if arrived == after:
            loop.call_soon_threadsafe(kill)
            landed.wait(LANDING_SECONDS)

    if after == 0:
        kill()
    faults.arrivals = arrival
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        return None
    except Exception as exc:  # what the run let escape is for the invariants to judge
        return exc
    finally:
        faults.arrivals = None
    return None
