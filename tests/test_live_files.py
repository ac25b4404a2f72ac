"""The live servers' private files: owner-only, and a reused workdir's secrets are kept, not rewritten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from letta_matrix_reference.live.errors import LiveError
from letta_matrix_reference.live.state import read_state, write_private, write_state
from letta_matrix_reference.live.synapse import SECRETS_FILE, SynapseServer


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_private_files_are_for_the_owner_only(tmp_path: Path) -> None:
    write_private(tmp_path / "key", "secret")
    write_state(tmp_path, {"pid": 1})
    assert (_mode(tmp_path / "key"), (tmp_path / "key").read_text()) == (0o600, "secret")
    assert [_mode(path) for path in tmp_path.iterdir() if path.name != "key"] == [0o600]
    assert read_state(tmp_path) == {"pid": 1}


def test_a_reused_workdir_keeps_its_secrets_and_leaves_the_file_alone(tmp_path: Path) -> None:
    SynapseServer(tmp_path)._load_or_save_secrets(tmp_path)
    path = tmp_path / SECRETS_FILE
    first = json.loads(path.read_text())
    assert _mode(path) == 0o600
    os.utime(path, ns=(0, 0))
    again = SynapseServer(tmp_path)
    again._load_or_save_secrets(tmp_path)
    assert again._admin_password == first["admin_password"]
    assert path.stat().st_mtime_ns == 0  # nothing changed, so nothing was written
    SynapseServer(tmp_path, admin_password="given")._load_or_save_secrets(tmp_path)
    assert json.loads(path.read_text())["admin_password"] == "given"


def test_a_workdir_of_another_server_name_is_refused(tmp_path: Path) -> None:
    SynapseServer(tmp_path)._load_or_save_secrets(tmp_path)
    with pytest.raises(LiveError, match=r"holds a homeserver for 'matrix\.test', not 'other\.test'"):
        SynapseServer(tmp_path, server_name="other.test")._load_or_save_secrets(tmp_path)
