"""A bounded record of every exchange the mock served, for assertions and coverage. Bodies go in
redacted (`contracts.redaction`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


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
