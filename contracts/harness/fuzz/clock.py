"""Virtual time for fuzz targets: the loop a target runs on, with the mock servers on the same loop.

The loop's clock is the real clock plus every wait it skipped: whenever nothing can run (no callback is
ready, no socket has anything to read or write, no executor thread is working) and the next thing due is a
timer, the clock jumps to that timer. A target's `asyncio.sleep`, its backoffs, its `asyncio.timeout`s and a
fault's latency in the mock then cost no wall time, and keep their order: a 30 s latency still outlasts a
10 s client timeout, at once. Only because the mock answers on the same loop does "no socket is ready" mean
"nobody is working on an answer" — with the mock on another thread, the clock would jump to a request's
timeout while the mock was still answering it. Work handed to the loop's executor (`asyncio.to_thread`,
`run_in_executor`, name resolution) is waited for in real time.

So a target must not block its loop (a synchronous HTTP call to the mock would wait for an answer that the
blocked loop cannot give), nor wait on threads of its own making; run a synchronous client with
`asyncio.to_thread`, or fuzz on real time (`virtual_time=False`, `contracts fuzz --real-time`), where the mock
serves from a thread of its own.

(looptime does the same, but installs a pytest plugin that fails in any project without pytest-asyncio.)"""

from __future__ import annotations

import asyncio
import selectors
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

# Zero-time passes before a jump: what a loopback write or another thread's call_soon_threadsafe has just
# set going gets a few polls to arrive first.
IDLE_POLLS = 8

Events = list[tuple[selectors.SelectorKey, int]]
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0  # seconds of waiting the clock jumped over
        self._idle_polls = 0
        self._executor_work: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()
        selector: selectors.BaseSelector = self._selector  # type: ignore[attr-defined]
        self._real_select = selector.select
        selector.select = self._select  # type: ignore[method-assign]

    def time(self) -> float:
        return super().time() + self.skipped

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._executor_work.add(future)
        return future

    def _select(self, timeout: float | None = None) -> Events:
        """The selector's select, as the loop calls it with the time until its next timer (None: no timer,
        0: callbacks are ready)."""
        if timeout is None or timeout <= 0 or any(not work.done() for work in self._executor_work):
            self._idle_polls = 0
            return self._real_select(timeout)
        events = self._real_select(0)
        if events:
            self._idle_polls = 0
            return events
        self._idle_polls += 1
        if self._idle_polls > IDLE_POLLS:
            self._idle_polls = 0
            self.skipped += timeout  # the loop then finds its next timer due
        return []


def virtual_loop() -> asyncio.AbstractEventLoop:
    """A new event loop whose clock jumps over idle waits."""
    return VirtualTimeLoop()
