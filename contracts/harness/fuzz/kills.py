"""Killing a target mid-run, as a crash would: when the mock receives the run's `after`-th request (and
before it acts on it), the target's task is cancelled, at the await where it waits for that answer; the
mock then goes on and acts on the request, which the dead target never hears of. What the target saved
by then is all its next run has. The next run starts once the mock has finished every request the dead
one sent, as a restarted process comes back after a slow request is done (a client cannot tell a
request still running on the server from one that never arrived).

The mock either serves on a thread of its own (real time) or on the target's own loop (virtual time,
`shared_loop`): then the kill lands at once, as the mock is running on the loop the target waits on, and the
dead run's requests finish by running that loop, never by blocking it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mockgen.faults import FaultTable
from mockgen.journal import Journal

# How long the mock's thread waits for the kill to land; the target's loop is idle then (it waits for the
# mock's answer), so this only bounds a target that is not.
LANDING_SECONDS = 2.0
# How long to wait for the mock to finish the dead run's requests (a latency fault is at most 50 ms).
SETTLING_SECONDS = 5.0


def killed_run(
    loop: asyncio.AbstractEventLoop,
    start: Callable[[], Awaitable[Any]],
    faults: FaultTable,
    journal: Journal,
    after: int,
    bound: float,
    *,
    shared_loop: bool = False,
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
        if arrived == after and shared_loop:
            kill()  # on the target's loop: the cancel lands at its next await, the wait for this answer
        elif arrived == after:
            loop.call_soon_threadsafe(kill)
            landed.wait(LANDING_SECONDS)

    if after == 0:
        kill()
    base = journal.last_seq
    faults.arrivals = arrival
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        _settle(journal, base, arrived, loop if shared_loop else None)
        return None
    except Exception as exc:  # what the run let escape is for the invariants to judge
        return exc
    finally:
        faults.arrivals = None
    return None


def _settle(
    journal: Journal, base: int, requests: int, loop: asyncio.AbstractEventLoop | None = None
) -> None:
    """Until the mock has journaled `requests` exchanges after `base` (every one the dead run sent). The
    journal has no event to wait on: between looks the mock's thread runs, or, when the mock serves on
    `loop` (virtual time), that loop runs its handlers."""
    deadline = time.monotonic() + SETTLING_SECONDS
    while journal.last_seq - base < requests and time.monotonic() < deadline:
        if loop is None:
            time.sleep(0.001)
        else:
            loop.run_until_complete(asyncio.sleep(0.001))
