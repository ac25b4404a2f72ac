"""Where a long-running handler (a long-poll such as Matrix `/sync`) waits, and what wakes it: a reset of
the world (what it waits for is gone) or the servers' shutdown (nobody will wait for its answer).

Thread-safe: the servers' loop may run on a background thread while a test resets the world from its own."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Iterator


class Wakeups:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[asyncio.Future[None]] = set()
        # The waiters that wait for news of one key (a user's /sync), woken by `wake(keys)` for that key.
        self._keyed: dict[str, set[asyncio.Future[None]]] = {}
        self._closing = False

    @property
    def closing(self) -> bool:
        """The servers are shutting down: a handler should answer now rather than wait."""
        return self._closing

    async def wait(self) -> None:
        """Return once woken (at once while closing). Bound it with `asyncio.timeout`, as a long-poll does."""
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closing:
                return
            self._waiting.add(future)
        try:
            await future
        finally:
            with self._lock:
                self._waiting.discard(future)

    @property
    def waiting(self) -> int:
        """How many waiters are waiting now."""
        with self._lock:
            return len(self._waiting) + sum(len(futures) for futures in self._keyed.values())

    @contextlib.contextmanager
    def armed(self, key: str) -> Iterator[asyncio.Future[None]]:
        """A future that a later wake of `key`, or of everyone, resolves (done at once while closing): arm
        it, look at the state, then await it, and no wake between the look and the wait is lost."""
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closing:
                future.set_result(None)
            else:
                self._keyed.setdefault(key, set()).add(future)
        try:
            yield future
        finally:
            with self._lock:
                futures = self._keyed.get(key)
                if futures is not None:
                    futures.discard(future)
                    if not futures:
                        del self._keyed[key]

    def wake(self, keys: Iterable[str] | None = None) -> None:
        """Wake the waiters of `keys`, or every waiter (None: a reset, a stop), from any thread."""
        with self._lock:
            if keys is None:
                waiting = list(self._waiting)
                waiting += [future for futures in self._keyed.values() for future in futures]
            else:
                waiting = [future for key in keys for future in self._keyed.get(key, ())]
        for future in waiting:
            # A loop already closed has no waiter left to wake.
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_resolve, future)

    def close(self) -> None:
        """Shutdown: wake every waiter, and let no new one wait."""
        with self._lock:
            self._closing = True
        self.wake()

    def reopen(self) -> None:
        """Serving again (the same world under new servers): waits wait again."""
        with self._lock:
            self._closing = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
