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
    # All it says: the port, and no third-party warning from the imports before it.
    assert result.stderr == f"mockgen: cannot listen on 127.0.0.1:{port}: Address already in use\n"


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["serve", "--letta-port", "99999"], "mockgen serve: argument --letta-port: 99999 is not a port"),
        (["serve", "--matrix-port", "http"], "mockgen serve: argument --matrix-port: http is not a port"),
        (["serve", "--port", "8283"], "mockgen serve: unrecognized arguments: --port 8283"),
        (["serve", "--header-timeout", "0"], "mockgen serve: argument --header-timeout: 0 is not a positive"),
    ],
)
def test_argument_errors_are_one_line_naming_the_flag_and_value(
    arguments: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mockgen.cli import main

    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(said)
    assert err.count("\n") == 1
    assert "usage:" not in err


PLUGIN_TESTS = """
import aiohttp
import httpx
import pytest

LETTA = "http://192.168.50.90:8289"
MATRIX = "http://test-synapse:8008"


async def _bad_call(matrix_mock):
    async with aiohttp.ClientSession() as http:
        async with http.post(MATRIX + "/_matrix/client/v3/login", json={"user": "admin"},
                             timeout=aiohttp.ClientTimeout(total=10)) as answer:
            return answer.status

async def test_strict(matrix_mock):
    assert await _bad_call(matrix_mock) == 400

async def test_strict_and_failing(matrix_mock):
    assert await _bad_call(matrix_mock) == 400
    assert False, "the test's own failure"

@pytest.mark.mock_lenient
async def test_lenient(matrix_mock):
    assert await _bad_call(matrix_mock) == 400
    assert len(matrix_mock.violations()) == 2

def test_ini_server_name_and_per_service_journals(letta_mock, matrix_mock, mockgen_session):
    assert matrix_mock.user_id("admin") == "@admin:ini.example"
    with httpx.Client(timeout=10) as client:
        assert client.get(LETTA + "/v1/health/").status_code == 200
        assert client.get(MATRIX + "/_matrix/client/versions").status_code == 200
    assert [e.service for e in matrix_mock.journal()] == ["matrix"]
    assert [e.service for e in letta_mock.journal()] == ["letta"]
    assert mockgen_session.starts == 1

@pytest.mark.mock_config(server_name="matrix.oculair.ca", letta_token=None)
def test_marker_server_name_and_an_open_letta(letta_mock, matrix_mock, mockgen_session):
    letta_mock.add_agents(1)
    with httpx.Client(timeout=10) as client:
        login = client.post(MATRIX + "/_matrix/client/v3/login",
                            json={"type": "m.login.password", "user": "@admin:matrix.oculair.ca",
                                  "password": "admin_password"})
        assert login.json()["user_id"] == "@admin:matrix.oculair.ca"
        assert len(client.get(LETTA + "/v1/agents/").json()) == 1  # no token at all
    assert (letta_mock.token, letta_mock.headers) == ("", {})
    assert mockgen_session.starts == 2

@pytest.mark.mock_config(server_name="matrix.oculair.ca", letta_token=None)
def test_the_same_configuration_does_not_restart(mockgen_session, matrix_mock):
    assert mockgen_session.starts == 2

def test_back_to_the_ini_configuration_restarts(mockgen_session, matrix_mock):
    assert matrix_mock.server_name == "ini.example"
    assert mockgen_session.starts == 3

async def test_a_swallowed_refusal_still_fails_the_test(matrix_mock):
    try:
        async with aiohttp.ClientSession() as http:
            await http.get("http://203.0.113.9/")
    except Exception:
        pass  # a client that gives up quietly

@pytest.mark.mock_config(sever_name="typo")
def test_a_misspelt_setting(matrix_mock):
    pass

@pytest.mark.mock_config(letta_format="xml")
def test_a_format_the_mock_refuses(letta_mock):
    pass
"""

PLUGIN_INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
mockgen_server_name = ini.example
mockgen_routes =
    http://192.168.50.90:8289 = letta
    http://test-synapse:8008 = matrix
"""


def test_plugin_configures_routes_and_fails_broken_tests_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_suite=PLUGIN_TESTS)
    pytester.makeini(PLUGIN_INI)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_strict _*",
            "*2 contract violation(s) in this test:",
            "*matrix: POST /_matrix/client/v3/login -> 400: login: request body at /type*",
            "*_ test_strict_and_failing _*",
            "*the test's own failure*",
            "*- Captured mockgen call -*",
            "*2 contract violation(s) in this test:",
            "*_ test_a_swallowed_refusal_still_fails_the_test _*",
            "*1 request(s) refused by routing (neither routed nor loopback):",
            "*http://203.0.113.9/",
        ]
    )
    result.stdout.fnmatch_lines(["*mock_config: unknown setting(s) sever_name; known: *server_name*"])
    result.stdout.fnmatch_lines(["*mock_config: agents format 'xml' is not one of array, envelope"])


SYNC_SUITE = """
import json
import urllib.request

import pytest

def test_plain(letta_mock):
    request = urllib.request.Request(letta_mock.url + "/v1/agents/", headers=letta_mock.headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer) == []
"""

STRICT_ASYNC_TEST = """
@pytest.mark.asyncio
async def test_marked(matrix_mock):
    assert matrix_mock.calls("login") == 0
"""


@pytest.mark.parametrize(
    ("arguments", "suite", "passed"),
    [
        (["-p", "no:asyncio"], SYNC_SUITE, 1),
        (
            ["-o", "asyncio_mode=strict", "-o", "asyncio_default_fixture_loop_scope=function"],
            SYNC_SUITE + STRICT_ASYNC_TEST,
            2,
        ),
    ],
    ids=["without-pytest-asyncio", "pytest-asyncio-strict"],
)
def test_plugin_works_with_and_without_pytest_asyncio(
    pytester: pytest.Pytester, arguments: list[str], suite: str, passed: int
) -> None:
    pytester.makepyfile(test_user_suite=suite)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *arguments)
    result.assert_outcomes(passed=passed)


def test_the_public_api_is_exported_from_the_package() -> None:
    import mockgen
    from mockgen.handles import LettaMock
    from mockgen.reroute import routed

    assert (mockgen.LettaMock, mockgen.routed) == (LettaMock, routed)
    assert all(getattr(mockgen, name) is not None for name in mockgen.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = mockgen.nothing


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
