"""The process :class:`~letta_matrix_reference.live.letta016.Letta016Server` starts: a private PostgreSQL,
Letta 0.16.8's schema in it, then ``letta server`` -- all in one process group, so the lifecycle that stops
one server process (SIGTERM to its group, SIGKILL after the grace period, the watchdog) stops all of them::

    python -s -P -m letta_matrix_reference.live.letta016.supervisor WORKDIR PORT

run by Letta's venv with ``PYTHONPATH`` reaching this package (the children get an environment without it).
The cluster is ``WORKDIR/pg/data`` and its password ``WORKDIR/pg-password``: a reused workdir keeps both, and
the schema is made once (``WORKDIR/pg/schema-ready``). PostgreSQL listens on a free port of 127.0.0.1 only;
its log and Letta's go to this process's stdout/stderr (the server log).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from letta_matrix_reference.live import postgres
from letta_matrix_reference.live.errors import LiveError
from letta_matrix_reference.live.net import LOOPBACK, free_port
from letta_matrix_reference.live.state import new_secret, write_private

#: Postgres and the schema get this long; Letta's own readiness is the starter's deadline.
SETUP_TIMEOUT = 120.0
CHILD_GRACE = 8.0
PASSWORD_FILE = "pg-password"
SCHEMA_MARKER = "schema-ready"
SCHEMA_SCRIPT = Path(__file__).with_name("schema.py")


def _password(workdir: Path) -> str:
    path = workdir / PASSWORD_FILE
    if path.is_file():
        return path.read_text().strip()
    secret = new_secret(24)
    write_private(path, secret + "\n")
    return secret


def _stop(proc: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=CHILD_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(workdir: Path, port: int) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    python = Path(sys.executable)
    password = _password(workdir)
    pgdir = workdir / "pg"
    deadline = time.monotonic() + SETUP_TIMEOUT
    data = postgres.prepare_cluster(pgdir, password)
    pg_port = free_port()
    pg = postgres.start_postgres(data, pg_port, env=env)
    letta: subprocess.Popen[bytes] | None = None
    try:
        postgres.wait_for_postgres(pg, pg_port, deadline)
        env["LETTA_PG_URI"] = postgres.database_uri(pg_port, password)
        # Letta's default (LETTA_DISABLE_SQLALCHEMY_POOLING true: NullPool) opens a new asyncpg connection per
        # session; after a chat step's LLM call the provider-trace task's connect is left dangling (its
        # socket connected but never written: no startup message) until asyncpg's default 60 s connect
        # timeout, and the turn waits for it. A pool reuses connections, so there is no such connect.
        env["LETTA_DISABLE_SQLALCHEMY_POOLING"] = "false"
        if not (pgdir / SCHEMA_MARKER).is_file():
            postgres.psql(pg_port, password, f"CREATE DATABASE {postgres.DATABASE}")
            subprocess.run(
                [str(python), "-P", str(SCHEMA_SCRIPT)],
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(workdir),
                check=True,
                timeout=max(1.0, deadline - time.monotonic()),
            )
            (pgdir / SCHEMA_MARKER).write_text("")
        if stop.is_set():
            return 0
        letta = subprocess.Popen(
            [str(python.parent / "letta"), "server", "--host", LOOPBACK, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(workdir),
        )
        while not stop.wait(0.2):
            if letta.poll() is not None:
                print(f"letta server exited with code {letta.returncode}", file=sys.stderr)
                return letta.returncode or 1
            if pg.poll() is not None:
                print(f"postgres exited with code {pg.returncode}", file=sys.stderr)
                return 1
        return 0
    except (LiveError, subprocess.SubprocessError) as exc:
        print(f"letta016 supervisor: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop(letta, signal.SIGTERM)
        _stop(pg, signal.SIGINT)  # PostgreSQL's "fast" shutdown: no waiting for clients


def main(argv: list[str]) -> int:
    workdir, port = argv
    return run(Path(workdir), int(port))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
