"""Install, configure, start and stop real Synapse and Letta servers on 127.0.0.1 for tests and CI.

Submodules are deliberately not imported here so that ``python -m letta_matrix_reference.live.synapse`` and
``python -m letta_matrix_reference.live.letta`` run without a "module already imported" warning and without
pulling in optional dependencies.

- :mod:`letta_matrix_reference.live.synapse` -- a real Synapse homeserver (SQLite).
- :mod:`letta_matrix_reference.live.letta` -- a real Letta 0.11.7 server (SQLite).
- :mod:`letta_matrix_reference.live.common` -- shared helpers (cached virtualenvs, ports, readiness,
  process control).
"""

from __future__ import annotations

__all__: list[str] = []
