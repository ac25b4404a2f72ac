"""What the fuzzer drives: an async callable named `module:callable`, with optional hooks that let invariants
look inside (set with `@fuzz_target`).

A target takes either one parameter, a `FuzzContext` (the servers, the Letta token, the accounts, the
server name, its working directory), or the three of the plain form `(letta_url, matrix_url, workdir)`,
which knows only the URLs. The form is read from the signature when the `Target` is made. A target in the
context form gets the context in `check_converged` too (in place of the plain form's workdir)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

LoadState = Callable[[Path], Mapping[str, Any]]


@dataclass(frozen=True)
class Account:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class FuzzContext:
    """Everything a target needs to reach the mock services as a client would be configured for them."""

    letta_url: str
    matrix_url: str
    workdir: Path  # the target's own directory, the same for every run of one example
    letta_token: str = field(repr=False)
    server_name: str
    admin: Account  # a Matrix server admin
    bot: Account  # an ordinary Matrix account

    def user_id(self, account: Account) -> str:
        return f"@{account.username}:{self.server_name}"


ContextRun = Callable[[FuzzContext], Awaitable[Any]]
PlainRun = Callable[[str, str, Path], Awaitable[Any]]
CheckConverged = Callable[[Mapping[str, Any], FuzzContext], list[str]]
PlainCheckConverged = Callable[[Mapping[str, Any], Path], list[str]]
AnyRun = TypeVar("AnyRun", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class Target:
    name: str
    run: ContextRun | PlainRun
    expected_exceptions: tuple[type[BaseException], ...] = ()
    load_state: LoadState | None = None
    check_converged: CheckConverged | PlainCheckConverged | None = None
    relays: bool = False  # it carries people's messages to agents and back: the relay invariants apply
    takes_context: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "takes_context", _takes_context(self.name, self.run))

    def start(self, context: FuzzContext) -> Awaitable[Any]:
        """One run of the target, in whichever form it takes its arguments."""
        run: Callable[..., Awaitable[Any]] = self.run
        if self.takes_context:
            return run(context)
        return run(context.letta_url, context.matrix_url, context.workdir)

    def converged(self, snapshot: Mapping[str, Any], context: FuzzContext) -> list[str]:
        """What `check_converged` finds still wrong (nothing, without the hook)."""
        check: Callable[..., list[str]] | None = self.check_converged
        if check is None:
            return []
        return check(snapshot, context if self.takes_context else context.workdir)


def _takes_context(name: str, run: Callable[..., Any]) -> bool:
    """Whether `run` takes a FuzzContext (one parameter) or the plain three; anything else is refused."""
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):
        raise ValueError(f"fuzz target {name}: its parameters cannot be read") from None
    parameters = signature.parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in positional and p.default is p.empty]
    other_required = [
        p for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY and p.default is p.empty
    ]
    variadic = any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters)
    if not other_required and not variadic and len(required) in (1, 3):
        return len(required) == 1
    shown = signature.replace(return_annotation=inspect.Signature.empty)
    raise ValueError(
        f"fuzz target {name} takes {shown}: a target takes one parameter (a FuzzContext) or three "
        "(letta_url, matrix_url, workdir)"
    )


def fuzz_target(
    *,
    expected_exceptions: tuple[type[BaseException], ...] = (),
    load_state: LoadState | None = None,
    check_converged: CheckConverged | PlainCheckConverged | None = None,
    relays: bool = False,
) -> Callable[[AnyRun], AnyRun]:
    """Declare what the fuzzer may expect of a target:

    - `expected_exceptions`: what it may raise when the faults make success impossible (e.g. a
      configuration error for a refused token); anything else escaping it is a failure;
    - `load_state(workdir)`: its persisted state, as {entry id: entry}; must always load and never lose an
      entry it had;
    - `check_converged(world snapshot, context)` (`(world snapshot, workdir)` for a target in the plain
      form): what is still wrong after a run without faults;
    - `relays`: it relays people's messages in agent rooms to their agents and the answers back, so every
      person's message must be answered exactly once (the `relay-*` invariants)."""

    def declare(run: AnyRun) -> AnyRun:
        run.expected_exceptions = expected_exceptions  # type: ignore[attr-defined]
        run.load_state = load_state  # type: ignore[attr-defined]
        run.check_converged = check_converged  # type: ignore[attr-defined]
        run.relays = relays  # type: ignore[attr-defined]
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
        relays=bool(getattr(run, "relays", False)),
    )
