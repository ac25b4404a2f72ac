"""`contracts fuzz --database`: a directory or a Redis URL on loopback; anything else is refused in one
line before a run starts. (Two processes sharing a real Redis: tests_fuzz/test_redis_shards.py, make fuzz.)"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from contracts.databases import open_database
from contracts.harness.cli import main as contracts_main
from contracts.loopback import is_loopback


def test_a_path_is_a_directory_database(tmp_path: Path) -> None:
    assert isinstance(open_database(str(tmp_path / "examples")), DirectoryBasedExampleDatabase)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
     ("10.0.0.1", False), ("0.0.0.0", False), ("redis.example.com", False), ("localhost.evil", False)],
)  # fmt: skip
def test_only_loopback_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://10.0.0.1:6379/0", "on a loopback address (127.0.0.1, ::1, localhost), not 10.0.0.1"),
        ("redis://redis.example.com/0", "not redis.example.com"),
        ("redis:///0", "no host"),
        ("redis://127.0.0.1:port/0", "example database redis://127.0.0.1:port/0:"),
    ],
)  # fmt: skip
def test_a_redis_url_off_loopback_or_malformed_is_refused(url: str, said: str) -> None:
    with pytest.raises(ValueError, match="example database") as refused:
        open_database(url)
    assert said in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound by nobody that listens: a connection there is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_redis_url_where_nothing_answers_is_refused(closed_port: int) -> None:
    with pytest.raises(ValueError, match=f"redis://127.0.0.1:{closed_port}/0: no Redis answers there"):
        open_database(f"redis://127.0.0.1:{closed_port}/0")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_cli_refuses_a_redis_database_off_loopback_in_one_line(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    database = "redis://192.0.2.1:6379/0"
    arguments = ["fuzz", "--target", "tests.fuzz_targets:lists_agents", "--quiet", "--no-sweep",
                 "--examples", "1", "--workers", workers, "--database", database]  # fmt: skip
    assert contracts_main(arguments) == 2
    error = capsys.readouterr().err
    assert error == (
        "contracts fuzz: example database redis://192.0.2.1:6379/0: Redis must be on a loopback address "
        "(127.0.0.1, ::1, localhost), not 192.0.2.1\n"
    )
