"""Install, configure, start and stop real Synapse and Letta servers on 127.0.0.1 for tests and CI.

Submodules are deliberately not imported here so that ``python -m live.synapse`` and
``python -m live.letta`` run without a "module already imported" warning and without
pulling in optional dependencies.

- :mod:`live.synapse` -- a real Synapse homeserver (SQLite).
- :mod:`live.letta` -- a real Letta 0.11.7 server (SQLite).
- :mod:`live.common` -- shared helpers (cached virtualenvs, ports, readiness, process control).
"""

from __future__ import annotations

__all__: list[str] = []
