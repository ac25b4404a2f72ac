"""The contract-coverage matrix: for every operation x documented status x response variant, was it
exercised? Built from journal entries (the mock's, or a fuzz run's), written as Markdown and JSON.

A variant is a branch of a union response body (`bare array` / `envelope`, ...); cells of operations with
plain bodies have no variant. Only answers that kept to the contract count as exercising a cell."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from contracts.specs import SPEC_FILES
from contracts.validation import ContractValidator, Violation, validator_for

Cell = tuple[str, str, int, str | None]  # service, operation, status, variant


class Exchanged(Protocol):
    """What coverage reads of one exchange (a mock journal entry is one)."""

    @property
    def service(self) -> str: ...
    @property
    def operation(self) -> str | None: ...
    @property
    def status(self) -> int: ...
    @property
    def variant(self) -> str | None: ...
    @property
    def violations(self) -> Sequence[Violation]: ...


def service_of(operation_id: str, services: Iterable[str] = tuple(SPEC_FILES)) -> str:
    """The service (of `services`) whose spec defines `operation_id`; KeyError when none does."""
    for service in services:
        if operation_id in validator_for(service).operations:
            return service
    raise KeyError(f"no operation {operation_id!r} in the specs")


@dataclass
class Coverage:
    """Hit counts per documented cell of the operations in scope."""

    cells: dict[Cell, int] = field(default_factory=dict)

    @classmethod
    def documented(
        cls, validators: Mapping[str, ContractValidator], operations: Iterable[str] | None = None
    ) -> Coverage:
        """Every documented cell of `operations` (operationIds, looked up in every validator; None: every
        operation), unhit."""
        wanted = None if operations is None else set(operations)
        cells: dict[Cell, int] = {}
        for service, validator in validators.items():
            for operation in validator.iter_operations():
                if wanted is not None and operation.operation_id not in wanted:
                    continue
                for status in operation.documented_statuses:
                    variants: list[str | None] = [v.title for v in operation.responses[str(status)].variants]
                    variants = variants or [None]
                    for variant in variants:
                        cells[(service, operation.operation_id, status, variant)] = 0
        return cls(cells)

    def record(self, entries: Iterable[Exchanged]) -> None:
        """Count exchanges (journal entries) into their cells."""
        for entry in entries:
            if any(violation.side == "response" for violation in entry.violations):
                continue
            cell: Cell = (entry.service, str(entry.operation), entry.status, entry.variant)
            if cell in self.cells:
                self.cells[cell] += 1

    def merge(self, other: Coverage) -> None:
        for cell, hits in other.cells.items():
            self.cells[cell] = self.cells.get(cell, 0) + hits

    @property
    def exercised(self) -> int:
        return sum(1 for hits in self.cells.values() if hits)

    @property
    def ratio(self) -> float:
        """The share of cells exercised; 0 when there are none, so that nothing to cover fails a gate."""
        return self.exercised / len(self.cells) if self.cells else 0.0

    def missing(self) -> list[Cell]:
        return sorted((cell for cell, hits in self.cells.items() if not hits), key=_sort_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "cells": len(self.cells),
            "exercised": self.exercised,
            "ratio": round(self.ratio, 4),
            "matrix": [
                {"service": s, "operation": o, "status": st, "variant": v, "hits": hits}
                for (s, o, st, v), hits in sorted(self.cells.items(), key=lambda item: _sort_key(item[0]))
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Coverage:
        return cls(
            {
                (row["service"], row["operation"], int(row["status"]), row["variant"]): int(row["hits"])
                for row in data["matrix"]
            }
        )

    def to_markdown(self, title: str = "Contract coverage") -> str:
        """One table per operation: a row per status, a column per variant."""
        by_operation: dict[tuple[str, str], dict[int, dict[str | None, int]]] = {}
        for (service, operation, status, variant), hits in self.cells.items():
            by_operation.setdefault((service, operation), {}).setdefault(status, {})[variant] = hits
        lines = [
            f"# {title}",
            "",
            f"**{self.exercised} of {len(self.cells)} cells exercised ({self.ratio:.0%}).**",
            "",
            "| service | operation | status | exercised (hits) |",
            "|---|---|---|---|",
        ]
        for (service, operation), statuses in sorted(by_operation.items()):
            for status in sorted(statuses):
                shown = ", ".join(
                    f"{'✓' if hits else '✗'} {variant or 'body'} ({hits})"
                    for variant, hits in sorted(statuses[status].items(), key=lambda kv: kv[0] or "")
                )
                lines.append(f"| {service} | {operation} | {status} | {shown} |")
        if not self.cells:
            lines += ["", "Nothing to cover: no documented operation was called."]
        missing = self.missing()
        if missing:
            lines += ["", "## Never exercised", ""]
            lines += [f"- {describe_cell(cell, code=True)}" for cell in missing]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path, name: str = "coverage") -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        markdown, data = directory / f"{name}.md", directory / f"{name}.json"
        markdown.write_text(self.to_markdown(), encoding="utf-8")
        data.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        return markdown, data


def describe_cell(cell: Cell, *, code: bool = False) -> str:
    """`service operation status (variant)`, the operation in backticks for Markdown."""
    service, operation, status, variant = cell
    shown = f"`{operation}`" if code else operation
    return f"{service} {shown} {status}{f' ({variant})' if variant else ''}"


def _sort_key(cell: Cell) -> tuple[str, str, int, str]:
    service, operation, status, variant = cell
    return service, operation, status, variant or ""


def operations_called(entries: Iterable[Exchanged]) -> Counter[str]:
    """How often each operation appears in journal entries (the scope of a target's coverage)."""
    return Counter(entry.operation for entry in entries if entry.operation)
