"""Ids and time for one homeserver.

Every random id comes from one generator that accounts and rooms share: a seeded store hands out the same ids
for the same requests only while the draws stay in one sequence."""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable, Iterable


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _nothing(audience: Iterable[str] | None) -> None:
    pass


class Ids:
    """Mints Synapse-shaped ids (events, rooms, devices, tokens, UIA sessions) and reads the clock."""

    def __init__(self, server_name: str, *, seed: int | None, clock: Callable[[], float]) -> None:
        self.server_name = server_name
        self._rng = random.Random(seed)
        self._clock = clock
        # The one stream every event, typing change, receipt and room account data takes a position on
        # (what a /sync token counts); `changed` is told after each step, so a waiting /sync looks again.
        self.stream = 0
        self.changed: Callable[[Iterable[str] | None], None] = _nothing

    def next_stream(self, audience: Iterable[str] | None = None) -> int:
        """The next stream position; tells `changed` whose syncs it concerns (None: anyone's), and their
        long-polls look again once the lock is free."""
        self.stream += 1
        self.changed(audience)
        return self.stream

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def now_s(self) -> int:
        return int(self._clock())

    def _letters(self, n: int, alphabet: str = string.ascii_letters) -> str:
        return "".join(self._rng.choices(alphabet, k=n))

    def _opaque(self) -> str:
        return _b64(self._rng.randbytes(32))

    def event_id(self) -> str:
        return "$" + self._opaque()

    def room_id(self, version: str) -> str:
        if version == "12":
            return "!" + self._opaque()
        return f"!{self._letters(18)}:{self.server_name}"

    def device_id(self) -> str:
        return self._letters(10, string.ascii_uppercase)

    def uia_session_id(self) -> str:
        return self._letters(24)

    def access_token(self, localpart: str) -> str:
        check = self._letters(6, string.ascii_letters + string.digits)
        return f"syt_{_b64(localpart.encode())}_{self._letters(20)}_{check}"
