"""`python -m letta_matrix_reference.bridge sync`: settings from flags or the environment, exit codes, and
logs without secrets."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from contracts.harness.fuzz import FuzzContext
from contracts.harness.fuzz.people import agent_rooms, let_in, say
from letta_matrix_reference.bridge.cli import EXIT_CONFIGURATION, EXIT_FAILED, EXIT_OK, main
from letta_matrix_reference.bridge.store import MAPPING_FILE
from letta_matrix_reference.bridge.target import convergence_problems, no_wait
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import Sleeps


@pytest.fixture
def env(letta_mock: LettaMock, matrix_mock: MatrixMock, data_dir: Path) -> dict[str, str]:
    admin, password = matrix_mock.admin
    return {
        "LETTA_URL": letta_mock.url,
        "LETTA_TOKEN": letta_mock.token,
        "MATRIX_URL": matrix_mock.url,
        "MATRIX_SERVER_NAME": matrix_mock.server_name,
        "MATRIX_ADMIN_USER": admin,
        "MATRIX_ADMIN_PASSWORD": password,
        "MATRIX_BOT_USER": "letta",
        "MATRIX_BOT_PASSWORD": "letta",
        "BRIDGE_DATA_DIR": str(data_dir),
    }


def cli(argv: list[str], env: dict[str, str]) -> int:
    return main(argv, env, sleep=no_wait)


def secrets_in(text: str, env: dict[str, str]) -> list[str]:
    """The token and passwords of the run (and every agent's, from the mapping) found in `text`."""
    known = [env["LETTA_TOKEN"], env["MATRIX_ADMIN_PASSWORD"]]
    mapping = Path(env["BRIDGE_DATA_DIR"]) / MAPPING_FILE
    if mapping.exists():
        for entry in json.loads(mapping.read_text())["agents"].values():
            known += [entry["password"], entry["access_token"] or "-"]
    return [secret for secret in known if secret in text]


def test_one_sync_from_the_environment(
    letta_mock: LettaMock, matrix_mock: MatrixMock, env: dict[str, str], fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(3)
    assert cli(["sync", "--once"], env) == EXIT_OK
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context) == []


def test_flags_win_over_the_environment(letta_mock: LettaMock, env: dict[str, str], tmp_path: Path) -> None:
    letta_mock.add_agents(1)
    assert cli(["sync", "--data-dir", str(tmp_path / "elsewhere")], env) == EXIT_OK
    assert (tmp_path / "elsewhere" / MAPPING_FILE).exists()
    assert not Path(env["BRIDGE_DATA_DIR"]).exists()


def test_missing_settings_exit_2(caplog: pytest.LogCaptureFixture) -> None:
    assert cli(["sync", "--once", "--letta", "http://127.0.0.1:9"], {}) == EXIT_CONFIGURATION
    assert "missing required settings: --letta-token (or LETTA_TOKEN)" in caplog.text


def test_a_refused_admin_exits_2(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    assert cli(["sync", "--admin-password", "wrong"], env) == EXIT_CONFIGURATION
    assert "the admin user admin cannot log in" in caplog.text


def test_an_unreadable_mapping_exits_2(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    data_dir = Path(env["BRIDGE_DATA_DIR"])
    data_dir.mkdir()
    (data_dir / MAPPING_FILE).write_text("{")
    assert cli(["sync"], env) == EXIT_CONFIGURATION
    assert "not valid JSON" in caplog.text


def test_failed_agents_exit_1_and_the_next_run_fixes_them(
    letta_mock: LettaMock, matrix_mock: MatrixMock, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    letta_mock.add_agents(2)
    matrix_mock.inject("createRoom", status=403, times=0, after=1)
    assert cli(["sync"], env) == EXIT_FAILED
    assert caplog.text.count("not in sync: agent") == 2
    matrix_mock.clear_faults()
    assert cli(["sync"], env) == EXIT_OK


def test_registration_without_the_dummy_flow_exits_2(
    letta_mock: LettaMock, matrix_mock: MatrixMock, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    letta_mock.add_agents(2)
    only_a_token = {"flows": [{"stages": ["m.login.registration_token"]}], "session": "s", "params": {}}
    matrix_mock.inject("register", status=401, body=only_a_token, times=0)
    assert cli(["sync"], env) == EXIT_CONFIGURATION
    assert "does not offer open registration" in caplog.text
    assert "m.login.registration_token" in caplog.text


def test_a_failed_listing_exits_1(letta_mock: LettaMock, env: dict[str, str]) -> None:
    letta_mock.inject("listAgents", status=422)
    assert cli(["sync", "--max-attempts", "1"], env) == EXIT_FAILED


def test_once_and_interval_exclude_each_other(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        cli(["sync", "--once", "--interval", "5"], env)
    assert raised.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_no_secret_is_ever_logged(
    letta_mock: LettaMock,
    matrix_mock: MatrixMock,
    env: dict[str, str],
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    letta_mock.add_agents(2)
    matrix_mock.inject("register", status=500, times=2)  # retries get logged
    matrix_mock.inject("setDisplayName", status=401, body={"errcode": "M_UNKNOWN_TOKEN", "error": "gone"})
    assert main(["sync", "--verbose"], env, sleep=sleeps) == EXIT_OK
    assert len(sleeps.delays) == 2
    assert "starting: BridgeConfig(" in caplog.text
    assert secrets_in(caplog.text, env) == []


def test_python_dash_m_bridge(
    letta_mock: LettaMock, matrix_mock: MatrixMock, env: dict[str, str], fuzz_context: FuzzContext
) -> None:
    letta_mock.add_agents(2)
    done = subprocess.run(
        [sys.executable, "-m", "letta_matrix_reference.bridge", "sync", "--once"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "sync done: 2 agents: 2 users and 2 rooms created" in done.stderr
    assert secrets_in(done.stdout + done.stderr, env) == []
    assert convergence_problems(matrix_mock.snapshot(), fuzz_context) == []


def test_interval_mode_syncs_until_a_signal(letta_mock: LettaMock, env: dict[str, str]) -> None:
    letta_mock.add_agents(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "letta_matrix_reference.bridge", "sync", "--interval", "0.05"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while letta_mock.calls("listAgents") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)  # a process to wait for, not a backoff
        process.send_signal(signal.SIGTERM)
        _, logged = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_OK, logged
    assert logged.count("sync done") >= 3
    assert "stopping after this sync" in logged


def test_relay_answers_until_a_signal(
    letta_mock: LettaMock, matrix_mock: MatrixMock, env: dict[str, str]
) -> None:
    letta_mock.add_agents(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "letta_matrix_reference.bridge", "relay", "--interval", "60"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    core = {matrix_mock.user_id("admin"), matrix_mock.user_id("letta")}
    try:
        deadline = time.monotonic() + 30
        bot = matrix_mock.user_id("letta")

        def bot_joined() -> list[dict[str, Any]]:
            # Until the bot is in the room, what is said there is from before the bridge joined it.
            rooms = agent_rooms(matrix_mock.snapshot(), core)
            return [room for room in rooms if room["members"].get(bot) == "join"]

        while not bot_joined() and time.monotonic() < deadline:
            time.sleep(0.02)  # a process to wait for, not a backoff
        [room] = bot_joined()
        person = let_in(matrix_mock.world, room, "ada")
        say(matrix_mock.world, room["room_id"], person, "hello")
        while time.monotonic() < deadline and not [
            e for e in matrix_mock.timeline(room["room_id"]) if e["content"].get("body") == "echo: hello"
        ]:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        _, logged = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_OK, logged
    replies = [e for e in matrix_mock.timeline(room["room_id"]) if e["content"].get("body") == "echo: hello"]
    assert len(replies) == 1
    assert "stopping after the turn under way" in logged
