"""mockgen: contract-checked, stateful mocks of Letta and Matrix.

The public API, importable from here (loaded on first use, so `import mockgen` stays cheap):
`MockConfig` and `World` (the mocks' configuration and state), `MockServers` (both servers on a thread),
`MockHandle`, `LettaMock` and `MatrixMock` (what the fixtures hand a test), `Entry` (a journal entry),
`routed` and `UnroutedRequest` (routing unmodified clients to the mocks)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker sees of the lazy exports below
    from mockgen.handles import LettaMock, MatrixMock, MockHandle
    from mockgen.journal import Entry
    from mockgen.reroute import UnroutedRequest, routed
    from mockgen.server import MockServers
    from mockgen.world import MockConfig, World

_EXPORTS = {
    "MockConfig": "mockgen.world",
    "World": "mockgen.world",
    "MockServers": "mockgen.server",
    "MockHandle": "mockgen.handles",
    "LettaMock": "mockgen.handles",
    "MatrixMock": "mockgen.handles",
    "Entry": "mockgen.journal",
    "routed": "mockgen.reroute",
    "UnroutedRequest": "mockgen.reroute",
}
__all__ = [
    "Entry",
    "LettaMock",
    "MatrixMock",
    "MockConfig",
    "MockHandle",
    "MockServers",
    "UnroutedRequest",
    "World",
    "routed",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mockgen' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
