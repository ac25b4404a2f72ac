"""Injected faults: which requests they hit and how often. Pure bookkeeping; the HTTP layer acts on them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """Answer matching requests with `status`/`body` (or drop the connection), after `latency_ms`.

    A request matches when every given selector matches: `operation` (an operationId), `path` (a regular
    expression searched in the request path), `method`, `service`. The first `after` matches pass through; the
    next `times` fire (`times == 0`: every one). `status=None` means "delay only": the request then goes on
    to the real handler."""

    id: int
    operation: str | None = None
    path: str | None = None
    method: str | None = None
    service: str | None = None
    status: int | None = None
    body: Any = None
    has_body: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    after: int = 0
    latency_ms: int = 0
    drop_connection: bool = False
    retry_after_ms: int | None = None
    # A stream's misbehaviour (streamAgentMessage): `cut_after` events the connection drops, `stall_after`
    # events it waits `stall_ms`, `error` ends it with an `event: error`, `omit_done` leaves out `[DONE]`.
    stream: dict[str, Any] | None = None
    seen: int = 0
    fired: int = 0
    _pattern: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path) if self.path else None

    @property
    def remaining(self) -> int | None:
        return None if self.times == 0 else max(0, self.times - self.fired)

    def selects(self, service: str, operation: str | None, method: str, path: str) -> bool:
        return (
            (self.service is None or self.service == service)
            and (self.operation is None or self.operation == operation)
            and (self.method is None or self.method.upper() == method.upper())
            and (self._pattern is None or self._pattern.search(path) is not None)
        )

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "id": self.id,
            "times": self.times,
            "remaining": self.remaining,
            "fired": self.fired,
        }
        for name in ("operation", "path", "method", "service", "status"):
            if getattr(self, name) is not None:
                shown[name] = getattr(self, name)
        if self.has_body:
            shown["body"] = self.body
        if self.headers:
            shown["headers"] = dict(self.headers)
        if self.after:
            shown["after"] = self.after
        if self.latency_ms:
            shown["latency_ms"] = self.latency_ms
        if self.drop_connection:
            shown["drop_connection"] = True
        if self.retry_after_ms is not None:
            shown["rate_limit"] = {"retry_after_ms": self.retry_after_ms}
        if self.stream:
            shown["stream"] = dict(self.stream)
        return shown


class FaultTable:
    """Installed faults, consulted in installation order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        # Told of every request as it arrives, before any fault or handler (on the server's thread): a fuzz
        # runner kills its target there, while it waits for that answer. Quick, and never raising.
        self.arrivals: Callable[[], None] | None = None

    def add(self, **settings: Any) -> Fault:
        with self._lock:
            fault = Fault(id=self._next_id, **settings)
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def take(
        self,
        service: str,
        operation: str | None,
        method: str,
        path: str,
        applicable: Callable[[Fault], bool] = lambda fault: True,
    ) -> Fault | None:
        """The fault that fires for this request, if any (its counters are advanced). Faults for which
        `applicable` is false (e.g. a status the operation does not document) are passed over."""
        if self.arrivals is not None:
            self.arrivals()
        with self._lock:
            for fault in self._faults:
                if (
                    fault.remaining == 0
                    or not fault.selects(service, operation, method, path)
                    or not applicable(fault)
                ):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after:
                    continue
                fault.fired += 1
                return fault
            return None

    def clear(self) -> int:
        with self._lock:
            removed = len(self._faults)
            self._faults.clear()
            return removed

    def __len__(self) -> int:
        return len(self._faults)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.to_json() for fault in self._faults]
