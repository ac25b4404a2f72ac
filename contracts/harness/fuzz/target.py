"""What the fuzzer drives: an async callable `target(letta_url, matrix_url, workdir)`, named
`module:callable`, with optional hooks that let invariants look inside (set with `@fuzz_target`)."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Run = Callable[[str, str, Path], Awaitable[Any]]
LoadState = Callable[[Path], Mapping[str, Any]]
CheckConverged = Callable[[Mapping[str, Any], Path], list[str]]


@dataclass(frozen=True)
class Target:
    name: str
    run: Run
    expected_exceptions: tuple[type[BaseException], ...] = ()
    load_state: LoadState | None = None
    check_converged: CheckConverged | None = None


def fuzz_target(
    *,
    expected_exceptions: tuple[type[BaseException], ...] = (),
    load_state: LoadState | None = None,
    check_converged: CheckConverged | None = None,
) -> Callable[[Run], Run]:
    """Declare what the fuzzer may expect of a target:

    - `expected_exceptions`: what it may raise when the faults make success impossible (e.g. a
      configuration error for a refused token); anything else escaping it is a failure;
    - `load_state(workdir)`: its persisted state, as {entry id: entry}; must always load and never lose an
      entry it had;
    - `check_converged(world snapshot, workdir)`: what is still wrong after a run without faults."""

    def declare(run: Run) -> Run:
        run.expected_exceptions = expected_exceptions  # type: ignore[attr-defined]
        run.load_state = load_state  # type: ignore[attr-defined]
        run.check_converged = check_converged  # type: ignore[attr-defined]
        return run

    return declare


def load_target(name: str) -> Target:
    """`package.module:callable` → Target (hooks read from `@fuzz_target`, when declared)."""
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a target is named module:callable, not {name!r}")
    run = getattr(importlib.import_module(module_name), attribute, None)
    if run is None or not callable(run):
        raise ValueError(f"{module_name} has no callable {attribute!r}")
    return Target(
        name=name,
        run=run,
        expected_exceptions=tuple(getattr(run, "expected_exceptions", ())),
        load_state=getattr(run, "load_state", None),
        check_converged=getattr(run, "check_converged", None),
    )
