"""Where the launcher fetches pgvector's Debian source from: the archive this machine's apt already uses for
its own release, read from either format of apt's sources (nothing is fetched here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from letta_matrix_reference.live.errors import InstallError
from letta_matrix_reference.live.postgres import AptSource, machine_debian_source


def _machine(tmp_path: Path, files: dict[str, str], codename: str = "bookworm") -> Path:
    (tmp_path / "etc" / "apt" / "sources.list.d").mkdir(parents=True)
    (tmp_path / "etc" / "os-release").write_text(f'NAME="Debian GNU/Linux"\nVERSION_CODENAME={codename}\n')
    for name, text in files.items():
        (tmp_path / "etc" / "apt" / name).write_text(text)
    return tmp_path


def test_a_deb822_source_for_the_release_is_found(tmp_path: Path) -> None:
    root = _machine(
        tmp_path,
        {
            "sources.list.d/other.sources": (
                "Types: deb\nURIs: http://other.test/x\nSuites: nodistro\nComponents: main\n"
            ),
            "sources.list.d/debian.sources": (
                "Types: deb\n# a comment\nURIs: http://mirror.test/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb\nURIs: http://mirror.test/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n"
            ),
        },
    )
    assert machine_debian_source(root) == AptSource(
        "http://mirror.test/debian", "/usr/share/keyrings/debian-archive-keyring.gpg"
    )


def test_a_one_line_source_for_the_release_is_found(tmp_path: Path) -> None:
    root = _machine(
        tmp_path,
        {
            "sources.list": (
                "# deb http://commented.test/debian bookworm main\n"
                "deb http://mirror.test/debian-security bookworm-security main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://mirror.test/debian bookworm main contrib\n"
            )
        },
    )
    assert machine_debian_source(root) == AptSource("http://mirror.test/debian", "/k.gpg")


def test_no_source_for_the_release_is_a_clear_error(tmp_path: Path) -> None:
    root = _machine(tmp_path, {"sources.list": "deb http://mirror.test/debian bullseye main\n"})
    with pytest.raises(InstallError, match="no Debian 'bookworm main' source"):
        machine_debian_source(root)
