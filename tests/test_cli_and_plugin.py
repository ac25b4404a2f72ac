"""`mockgen serve` from a shell, and the pytest plugin's strictness as a user sees it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            return line.strip()
        if process.poll() is not None:
            break
    raise AssertionError(f"mockgen printed nothing in time (exit {process.poll()})")


def test_serve_prints_the_two_ready_lines_and_stops_on_sigterm(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {"users": [{"username": "ops", "password": "pw", "admin": True}], "agents": [{"name": "a1"}]}
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mockgen.cli", "serve", "--letta-port", "0", "--matrix-port", "0",
         "--seed", str(seed),
         "--letta-token", "t0ken", "--server-name", "example.test", "--letta-version", "0.16.8"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        letta, matrix = _read_line(process, deadline), _read_line(process, deadline)
        assert letta.startswith("letta: http://127.0.0.1:")
        assert matrix.startswith("matrix: http://127.0.0.1:")
        request = urllib.request.Request(
            letta.split(" ", 1)[1] + "/v1/agents/", headers={"Authorization": "Bearer t0ken"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            agents = json.load(answer)
        assert [agent["name"] for agent in agents] == ["a1"]
        assert agents[0]["agent_type"] == "letta_v1_agent"  # --letta-version 0.16.8
        with urllib.request.urlopen(letta.split(" ", 1)[1] + "/v1/health/", timeout=10) as answer:
            assert json.load(answer)["version"] == "0.16.8"
        login = urllib.request.Request(
            matrix.split(" ", 1)[1] + "/_matrix/client/v3/login",
            data=json.dumps({"type": "m.login.password", "user": "ops", "password": "pw"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=10) as answer:
            assert json.load(answer)["user_id"] == "@ops:example.test"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_serve_refuses_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mockgen.cli", "serve", "--letta-port", str(port), "--matrix-port", "0"],
            capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert "Address already in use" in result.stderr


PLUGIN_TESTS = """
import aiohttp
import pytest

async def _bad_call(matrix_mock):
    async with aiohttp.ClientSession() as http:
        async with http.post(matrix_mock.url + "/_matrix/client/v3/login", json={"user": "admin"},
                             timeout=aiohttp.ClientTimeout(total=10)) as answer:
            return answer.status

async def test_strict(matrix_mock):
    assert await _bad_call(matrix_mock) == 400

@pytest.mark.mock_lenient
async def test_lenient(matrix_mock):
    assert await _bad_call(matrix_mock) == 400
    assert len(matrix_mock.violations()) == 2
"""


def test_plugin_fails_tests_whose_client_breaks_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_suite=PLUGIN_TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*2 contract violation(s) in this test*", "*login: request body at /type*"])


VERSION_TESTS = """
def test_the_mock_answers_as_the_configured_letta(letta_mock):
    assert letta_mock.version == "0.16.8"
    assert letta_mock.add_agent("a").to_json()["agent_type"] == "letta_v1_agent"
"""


def test_the_ini_option_picks_the_letta_version(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_version=VERSION_TESTS)
    pytester.makeini(
        "[pytest]\nmockgen_letta_version = 0.16.8\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
