"""A bounded record of every exchange the mock served, for assertions and coverage. Bodies are kept as the
bytes that went over the wire and come out parsed and redacted (`contracts.redaction`) when read: reading is
rare, serving is not, and parsing every answer a second time for the journal was a tenth of the mock's
time per request. The query string is redacted when recorded (it is short, and readers take it as is);
violations come from the validator with their secrets already masked."""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from contracts.redaction import redact, redact_query, redact_text
from contracts.validation import Violation, parse_json

# Bodies larger than this are journaled as their size only.
BODY_LIMIT = 16 * 1024
# Violations kept per entry; the rest are only counted (one hostile request can break the contract in
# thousands of places, and the journal is read back whole).
VIOLATION_LIMIT = 20
# Bytes of a body that is not JSON shown in its place.
RAW_LIMIT = 200


def _kept(raw: bytes) -> bytes | int:
    """What the journal holds of a body: the bytes, or only their number past the limit."""
    return raw if len(raw) <= BODY_LIMIT else len(raw)


def _readable(kept: bytes | int) -> Any:
    if isinstance(kept, int):
        return {"_truncated": True, "bytes": kept}
    if not kept:
        return None
    raw = kept
    try:
        document = parse_json(raw)
        # A body that is one string is text (a client that encoded its JSON twice sent its password in it).
        return redact_text(document) if isinstance(document, str) else redact(document)
    except (ValueError, RecursionError):  # RecursionError: `redact` on a body the mock refused as too deep
        # Not JSON (or too deep to walk): no structure tells where a password is, so the text is cut.
        return {"_raw": redact_text(raw[:RAW_LIMIT].decode("utf-8", "replace"))}


@dataclass(frozen=True)
class Entry:
    """One exchange as the mock served it. Typed all the way: readers (the pytest plugin, coverage, fuzz
    invariants) use the fields; only the control API and reports serialize it (`to_json`)."""

    seq: int
    time: float
    service: str
    operation: str | None
    method: str
    path: str
    query: str
    user: str | None
    request_raw: bytes | int  # see _kept
    status: int
    response_raw: bytes | int
    duration_ms: float
    fault: int | None
    variant: str | None
    violations: tuple[Violation, ...] = ()
    violations_omitted: int = 0

    @functools.cached_property
    def request_body(self) -> Any:
        return _readable(self.request_raw)

    @functools.cached_property
    def response_body(self) -> Any:
        return _readable(self.response_raw)

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
            "violations": [violation.to_dict() for violation in self.violations],
            "violations_omitted": self.violations_omitted,
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

    def record(
        self,
        *,
        time: float,
        service: str,
        operation: str | None,
        method: str,
        path: str,
        query: str,
        user: str | None,
        request_raw: bytes,
        status: int,
        response_raw: bytes,
        duration_ms: float,
        fault: int | None,
        variant: str | None,
        violations: Sequence[Violation] = (),
    ) -> Entry:
        # A violation's offending value can be a large part of a body: the journal bounds what it holds.
        kept = tuple(
            violation if violation.value is None else replace(violation, value=None)
            for violation in violations[:VIOLATION_LIMIT]
        )
        shown_query = redact_query(query)
        with self._lock:
            self._seq += 1
            if len(self._entries) == self._entries.maxlen:
                self.dropped += 1
            entry = Entry(
                seq=self._seq, time=time, service=service, operation=operation, method=method, path=path,
                query=shown_query, user=user, request_raw=_kept(request_raw), status=status,
                response_raw=_kept(response_raw), duration_ms=duration_ms, fault=fault, variant=variant,
                violations=kept, violations_omitted=max(0, len(violations) - VIOLATION_LIMIT),
            )  # fmt: skip
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
