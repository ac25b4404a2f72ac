"""A bounded record of every exchange the mock served, for assertions and coverage.

Secrets never go in whole: passwords are replaced by `***`, tokens keep a short prefix."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SECRET_KEYS = frozenset({"password", "new_password"})
TOKEN_KEYS = frozenset({"access_token", "refresh_token", "token"})
TOKEN_PREFIX = 8


def redact(value: Any) -> Any:
    """A copy of a JSON value with passwords masked and tokens shortened."""
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            if key in SECRET_KEYS and isinstance(item, str):
                cleaned[key] = "***"
            elif key in TOKEN_KEYS and isinstance(item, str):
                cleaned[key] = mask_token(item)
            else:
                cleaned[key] = redact(item)
        return cleaned
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def mask_token(token: str) -> str:
    return token[:TOKEN_PREFIX] + "…" if len(token) > TOKEN_PREFIX else "…"


@dataclass
class Entry:
    seq: int
    time: float
    service: str
    operation: str | None
    method: str
    path: str
    query: str
    user: str | None
    request_body: Any
    status: int
    response_body: Any
    duration_ms: float
    fault: int | None
    variant: str | None
    violations: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "service": self.service,
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "user": self.user,
            "request_body": self.request_body,
            "status": self.status,
            "response_body": self.response_body,
            "duration_ms": round(self.duration_ms, 3),
            "fault": self.fault,
            "variant": self.variant,
            "violations": self.violations,
        }


class Journal:
    """The last `capacity` exchanges; older ones are dropped (and counted)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[Entry] = deque(maxlen=capacity)
        self._seq = 0
        self.dropped = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def record(self, **fields: Any) -> Entry:
        with self._lock:
            self._seq += 1
            if len(self._entries) == self._entries.maxlen:
                self.dropped += 1
            entry = Entry(seq=self._seq, **fields)
            self._entries.append(entry)
            return entry

    def entries(
        self, *, since: int = 0, service: str | None = None, operation: str | None = None
    ) -> list[Entry]:
        with self._lock:
            return [
                entry
                for entry in self._entries
                if entry.seq > since
                and (service is None or entry.service == service)
                and (operation is None or entry.operation == operation)
            ]

    def clear(self) -> int:
        with self._lock:
            removed = len(self._entries)
            self._entries.clear()
            self.dropped = 0
            return removed

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self._entries)
