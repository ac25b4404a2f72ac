"""Virtual time for fuzz targets: the loop a target runs on, with the mock servers on the same loop.

The loop's clock (looptime's) jumps to the next timer whenever nothing can run: no callback is ready and no
socket has anything to read or write. A target's `asyncio.sleep`, its backoffs, its `asyncio.timeout`s and a
fault's latency in the mock then cost no wall time, and keep their order: a 30 s latency still outlasts a
10 s client timeout, at once. Only because the mock answers on the same loop does "no socket is ready" mean
"nobody is working on an answer" — with the mock on another thread, the clock would jump to a request's
timeout while the mock was still answering it. Work in threads (`asyncio.to_thread`, `run_in_executor`)
waits in real time, as the clock only steps while such a thread runs.

So a target must not block its loop: a synchronous HTTP call to the mock would wait for an answer that the
blocked loop cannot give. Run a synchronous client in a thread, or fuzz with real time (`virtual_time=False`,
`contracts fuzz --real-time`), where the mock serves from a thread of its own."""

from __future__ import annotations

import asyncio

import looptime


def virtual_loop() -> asyncio.AbstractEventLoop:
    """A new event loop whose clock starts at 0 and jumps over idle waits."""
    # Before each jump the loop makes zero-time passes (42, looptime's default), so that what was just woken
    # sets its own timers first and a loopback write still in the kernel arrives.
    loop: asyncio.AbstractEventLoop = looptime.new_event_loop()
    return loop
