"""Install, configure, start and stop real Synapse and Letta servers on 127.0.0.1 for tests and CI.

Submodules are deliberately not imported here so that ``python -m letta_matrix_reference.live.watchdog``
imports nothing but what it needs (it runs from a server's virtualenv), and so that a program using one
server loads only that one.

- :mod:`letta_matrix_reference.live.synapse` -- a real Synapse homeserver (SQLite).
- :mod:`letta_matrix_reference.live.letta` -- a real Letta 0.11.7 server (SQLite).
- :mod:`letta_matrix_reference.live.fakellm` -- a loopback OpenAI-compatible LLM its agents chat through.
- :mod:`letta_matrix_reference.live.server` -- their shared lifecycle, on ``venv``, ``process``, ``net``,
  ``state`` and ``watchdog``; ``live/README.md`` has the module map.
"""

from __future__ import annotations

__all__: list[str] = []
