"""A real Letta 0.16.8 server on 127.0.0.1, on a private PostgreSQL 15 + pgvector, kept offline.

>>> with Letta016Server() as info:  # doctest: +SKIP
...     agent = asyncio.run(create_agent(info, "agent-one"))

0.16.8 is the current server; since 0.12 Letta needs PostgreSQL with pgvector. Installing it
(:func:`ensure_installed`) means PostgreSQL 15 and pgvector on the machine (Debian's packages, pgvector
built from Debian's source: :func:`letta_matrix_reference.live.postgres.ensure_system`, which needs root the
first time) and ``letta[server,postgres]==0.16.8`` constrained by ``live/letta016-constraints.txt`` in its
own cached venv. Starting it runs :mod:`letta_matrix_reference.live.letta016.supervisor` in that venv: a
PostgreSQL cluster in the workdir on a free loopback port, the schema, then ``letta server``, all in one
process group. Letta's environment is the 0.11.7 one (:func:`letta_matrix_reference.live.letta.offline_env`:
bearer password, tracing and version checks off, no provider keys, every proxy variable at a dead loopback
port) plus ``LETTA_PG_URI`` and SQLAlchemy's connection pool on (see the supervisor).

CLI: ``python -m letta_matrix_reference.live letta016 install|start|stop|run|status`` (see ``--help``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

from letta_matrix_reference.live import postgres, venv
from letta_matrix_reference.live.letta import (
    LettaInfo,
    install_release,
    offline_env,
    prepare_home,
    release_key,
)
from letta_matrix_reference.live.server import ManagedServer
from letta_matrix_reference.live.state import new_secret, redact

log = logging.getLogger("letta_matrix_reference.live.letta016")

LETTA_VERSION = "0.16.8"
REQUIREMENT = f"letta[server,postgres]=={LETTA_VERSION}"
CONSTRAINTS_FILE = Path(__file__).parents[1] / "letta016-constraints.txt"
_SUPERVISOR = "letta_matrix_reference.live.letta016.supervisor"
# The directory that holds the letta_matrix_reference package: Letta's venv does not have it installed.
_IMPORT_ROOT = Path(__file__).resolve().parents[3]


def installed_python(cache_dir: Path | None = None) -> Path | None:
    """The cached venv's python if Letta 0.16.8 and PostgreSQL are installed, else None (installs nothing)."""
    if postgres.missing_system_parts():
        return None
    return venv.installed_python("letta016", release_key(REQUIREMENT, CONSTRAINTS_FILE), cache_dir)


def ensure_installed(cache_dir: Path | None = None, *, timeout: float = 2400.0) -> Path:
    """Install PostgreSQL 15 + pgvector (once per machine) and ``letta[server,postgres]==0.16.8`` into a
    cached venv; return its python. Idempotent; concurrent callers wait on lock files."""
    # First: building psycopg2 (a pin) needs PostgreSQL's pg_config.
    postgres.ensure_system(cache_dir)
    return install_release("letta016", REQUIREMENT, CONSTRAINTS_FILE, cache_dir, timeout=timeout)


class Letta016Server(ManagedServer[LettaInfo]):
    """One Letta 0.16.8 server and its PostgreSQL: ``start()``/``stop()``, or a (sync or async) context
    manager."""

    kind: ClassVar[str] = "letta016"
    ready_path: ClassVar[str] = "/v1/health/"
    default_start_timeout: ClassVar[float] = 240.0

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int = 0,
        password: str | None = None,
        cache_dir: Path | None = None,
        detach: bool = False,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, port=port, cache_dir=cache_dir, detach=detach, keep_workdir=keep_workdir)
        self._password = password or new_secret(24)

    def start(self, timeout: float | None = 240.0) -> LettaInfo:
        """Install if needed, start PostgreSQL and ``letta server``; wait for ``GET /v1/health/``: 200."""
        return super().start(timeout)

    def _install(self) -> Path:
        return ensure_installed(self._cache_dir)

    def _prepare(self, python: Path, workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
        home = prepare_home(workdir / "home")
        cmd = [str(python), "-s", "-P", "-m", _SUPERVISOR, str(workdir), str(port)]
        env = offline_env(home, self._password)
        env["PATH"] = f"{python.parent}:{env.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(python.parent.parent)
        env["PYTHONPATH"] = str(_IMPORT_ROOT)
        return cmd, env

    def _on_ready(self, url: str, pid: int, deadline: float) -> LettaInfo:
        log.info("letta016 password %s", redact(self._password))
        return LettaInfo(url=url, pid=pid, token=self._password)

    def _secrets(self) -> list[str]:
        return [self._password]

    def _state(self, info: LettaInfo) -> dict[str, object]:
        return {"info": asdict(info)}
