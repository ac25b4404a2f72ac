"""What a server leaves in its workdir, and the secrets in it: the state file (``start`` in one process,
``stop`` in another), owner-only files, secrets and their redaction, log tails."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from letta_matrix_reference.live.errors import LiveError

STATE_FILE = "live-state.json"


def new_secret(nbytes: int = 24) -> str:
    # Hex, not urlsafe base64: a secret starting with "-" reads as an option on a command line.
    return secrets.token_hex(nbytes)


def redact(secret: str) -> str:
    """Enough of a secret to recognise it in a log, never the whole of it."""
    if len(secret) <= 8:
        return "***"
    return f"{secret[:4]}...({len(secret)} chars)"


def tail_file(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a (log) file, or a note that there is none."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError as exc:
        return f"<no log at {path}: {exc.strerror}>"
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def redacted_tail(path: Path, hide: Sequence[str]) -> str:
    """:func:`tail_file` with every string in ``hide`` redacted (a log tail goes into an error message)."""
    text = tail_file(path)
    for secret in hide:
        if secret:
            text = text.replace(secret, redact(secret))
    return text


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (it holds credentials or keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def write_state(workdir: Path, state: Mapping[str, object]) -> Path:
    path = workdir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    write_private(tmp, json.dumps(dict(state), indent=2) + "\n")
    tmp.replace(path)
    return path


def read_state(workdir: Path) -> dict[str, Any]:
    path = workdir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LiveError(f"no {STATE_FILE} in {workdir}: was a server started there?") from None
    if not isinstance(data, dict):
        raise LiveError(f"{path} is not a JSON object")
    return data
