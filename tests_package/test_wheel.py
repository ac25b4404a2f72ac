"""The toolkit as a user gets it: a wheel built from the tracked files, installed into a fresh virtualenv
outside the repository, used from a project of its own (`make package`).

What it proves: only `contracts` and `mockgen` are installed at top level; the specs ship inside the
package; `mockgen serve` answers; a pytest suite that only uses the fixtures passes; `contracts validate`
and `contracts fuzz` run a user's files; nothing of the repository is importable from there."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mockgen.cli import ready_urls

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600  # seconds for a build or an install (from the package index, or pip's cache)
LETTA_CLIENT = "1.12.1"  # the official client, as observed against a real Letta 0.11.7


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=_clean_env()
    )
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH or virtualenv of ours leaking into the user's project."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the tracked files only (what a clean clone holds)."""
    source = tmp_path_factory.mktemp("checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.split(b"\0")
    for name in filter(None, (raw.decode() for raw in tracked)):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        original = ROOT / name
        if original.is_symlink():
            target.symlink_to(os.readlink(original))
        elif original.exists():  # a tracked file deleted in the working tree is not in a clean clone
            shutil.copy2(original, target)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out)], source)
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def user_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and pytest installed; its bin directory."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    bin_dir = home / "bin"
    # The same pinned versions the project tests with; pytest, pytest-asyncio and the clients the user's
    # own code uses (httpx, the official letta-client) for the user's own suite.
    constraints = ["-c", str(ROOT / "constraints.txt")]
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    user_packages = ["pytest", "pytest-asyncio", "httpx", f"letta-client=={LETTA_CLIENT}"]
    _run([*pip, *constraints, str(wheel), *user_packages], home)
    return bin_dir


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project directory, outside the repository."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def test_the_wheel_installs_only_contracts_and_mockgen_at_top_level(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"contracts", "mockgen"}
    assert {"contracts/openapi/letta.yaml", "contracts/openapi/matrix.yaml"} <= set(names)
    assert "contracts/openapi/mock-control.yaml" in names


def test_nothing_of_the_repository_is_importable_from_the_users_project(
    user_venv: Path, project: Path
) -> None:
    probe = textwrap.dedent(
        """
        import importlib.util, json
        import contracts, mockgen
        print(json.dumps({
            "contracts": contracts.__file__,
            "bridge": importlib.util.find_spec("bridge") is not None,
            "live": importlib.util.find_spec("live") is not None,
            "reference": importlib.util.find_spec("letta_matrix_reference") is not None,
        }))
        """
    )
    found = json.loads(_run([str(user_venv / "python"), "-c", probe], project).stdout)
    assert "site-packages" in found["contracts"]
    assert (found["bridge"], found["live"], found["reference"]) == (False, False, False)


@pytest.fixture
def served(user_venv: Path, project: Path) -> Iterator[dict[str, str]]:
    """`mockgen serve` from the installed wheel: {service: URL} from its two ready lines."""
    errors = project / "mockgen.err"  # a file, not a pipe nobody reads that could fill and block the server
    with errors.open("wb") as sink:
        process = subprocess.Popen(
            [str(user_venv / "mockgen"), "serve", "--letta-port", "0", "--matrix-port", "0"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env=_clean_env(),
        )
    try:
        assert process.stdout is not None
        try:
            urls = ready_urls(process, timeout=60)
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}: {errors.read_text(errors='replace')}") from exc
        yield urls
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_mockgen_serve_from_the_wheel_answers_both_services(served: dict[str, str]) -> None:
    assert set(served) == {"letta", "matrix"}
    with urllib.request.urlopen(f"{served['matrix']}/_matrix/client/versions", timeout=10) as answer:
        assert "v1.11" in json.load(answer)["versions"]
    with urllib.request.urlopen(f"{served['letta']}/v1/health/", timeout=10) as answer:
        assert answer.status == 200


USER_SUITE = '''
"""A user's tests: only the fixtures the installed plugin provides."""
import json
import urllib.error
import urllib.request

import pytest


def call(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_agents_come_from_the_letta_mock(letta_mock):
    letta_mock.add_agents(2)
    status, agents = call("GET", f"{letta_mock.url}/v1/agents/", headers=letta_mock.headers)
    assert status == 200 and len(agents) == 2


def test_a_fault_is_served_and_journaled(matrix_mock):
    matrix_mock.inject("login", status=429, times=1)
    user, password = matrix_mock.admin
    body = {"type": "m.login.password", "user": user, "password": password}
    status, answer = call("POST", f"{matrix_mock.url}/_matrix/client/v3/login", body)
    assert status == 429 and answer["errcode"] == "M_LIMIT_EXCEEDED"
    status, answer = call("POST", f"{matrix_mock.url}/_matrix/client/v3/login", body)
    assert status == 200 and answer["user_id"] == matrix_mock.user_id(user)
    assert matrix_mock.calls("login") == 2


@pytest.mark.mock_lenient
def test_a_request_against_the_contract_is_recorded(matrix_mock):
    status, _ = call("POST", f"{matrix_mock.url}/_matrix/client/v3/login", {"type": 7})
    assert status == 400
    assert matrix_mock.violations()
'''

TARGET = '''
"""A user's fuzz target in the context form: log in as the admin the runner hands it."""
import json
import urllib.error
import urllib.request

from contracts.harness.fuzz import FuzzContext


async def target(context: FuzzContext) -> None:
    body = {"type": "m.login.password", "user": context.admin.username, "password": context.admin.password}
    request = urllib.request.Request(
        f"{context.matrix_url}/_matrix/client/v3/login",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            json.load(answer)
    except (urllib.error.URLError, OSError, ValueError):
        pass  # a fault the runner served: this client gives up quietly
'''


def test_a_users_suite_passes_with_the_installed_fixtures(user_venv: Path, project: Path) -> None:
    (project / "test_mine.py").write_text(USER_SUITE, encoding="utf-8")
    done = _run([str(user_venv / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert "3 passed" in done.stdout, done.stdout


def test_contracts_validate_and_fuzz_run_a_users_files(user_venv: Path, project: Path) -> None:
    exchange = {
        "method": "GET",
        "url": "http://127.0.0.1:8008/_matrix/client/versions",
        "response": {
            "status": 200,
            "headers": {"Content-Type": "application/json"},
            "body": {"versions": ["v1.11"]},
        },
    }
    (project / "traffic.jsonl").write_text(json.dumps(exchange) + "\n", encoding="utf-8")
    done = _run(
        [str(user_venv / "contracts"), "validate", "--spec", "matrix", "--exchanges", "traffic.jsonl"],
        project,
    )
    assert "1 exchange(s) checked, 0 with violations" in done.stdout
    assert done.stderr == ""  # no third-party deprecation printed by the command
    (project / "mybot.py").write_text(TARGET, encoding="utf-8")
    fuzz = [str(user_venv / "contracts"), "fuzz", "--target", "mybot:target", "--quiet"]
    done = _run([*fuzz, "--examples", "3", "--seed", "1", "--report", "report"], project)
    assert (project / "report" / "coverage.json").is_file(), done.stdout


# -- a third-party client, unmodified: hard-coded non-loopback base URLs, a server name, its own sessions

THIRD_PARTY_CLIENT = '''
"""A bridge's managers as found in the wild: everything hard-coded, its own sessions and clients."""
import aiohttp
import httpx
from letta_client import Letta

LETTA_URL = "http://192.168.50.90:8289"
HOMESERVER = "http://test-synapse:8008"
ADMIN = "@admin:matrix.oculair.ca"
ADMIN_PASSWORD = "admin_password"
LETTA_TOKEN = "oculair-letta-password"
TIMEOUT = 10


async def sync_agents():
    """A room per Letta agent, named after it; returns {agent name: room id}."""
    async with httpx.AsyncClient(base_url=LETTA_URL, timeout=TIMEOUT) as letta:
        answer = await letta.get("/v1/agents/", headers={"Authorization": f"Bearer {LETTA_TOKEN}"})
        answer.raise_for_status()
        agents = answer.json()
    rooms = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as matrix:
        login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": ADMIN},
                 "password": ADMIN_PASSWORD}
        async with matrix.post(f"{HOMESERVER}/_matrix/client/v3/login", json=login) as answer:
            answer.raise_for_status()
            token = (await answer.json())["access_token"]
        for agent in agents:
            body = {"name": agent["name"], "preset": "private_chat"}
            async with matrix.post(f"{HOMESERVER}/_matrix/client/v3/createRoom", json=body,
                                   headers={"Authorization": f"Bearer {token}"}) as answer:
                answer.raise_for_status()
                rooms[agent["name"]] = (await answer.json())["room_id"]
    return rooms


def history(agent_id):
    """An agent's messages, as the managers fetch them: the official client, and no token."""
    client = Letta(base_url=LETTA_URL, max_retries=0, timeout=TIMEOUT)
    return [message.message_type for message in client.agents.messages.list(agent_id).items]


def homeserver_versions():
    with httpx.Client(timeout=TIMEOUT) as client:
        return client.get(f"{HOMESERVER}/_matrix/client/versions").json()["versions"]
'''

THIRD_PARTY_CONFIG = """
[tool.pytest.ini_options]
asyncio_mode = "auto"
mockgen_server_name = "matrix.oculair.ca"
mockgen_letta_token = "none"
mockgen_routes = [
    "http://192.168.50.90:8289 = letta",
    "http://test-synapse:8008 = matrix",
]
"""

# Every socket the suite connects, as the interpreter's audit hook sees it (below aiohttp and httpx).
THIRD_PARTY_CONFTEST = """
import json
import os
import sys

CONNECTED = []


def _audit(event, args):
    if event == "socket.connect":
        CONNECTED.append(repr(args[1]))


sys.addaudithook(_audit)


def pytest_sessionfinish(session):
    with open(os.environ["CONNECTED_FILE"], "w") as out:
        json.dump(CONNECTED, out)
"""

THIRD_PARTY_SUITE = """
import pytest

import oculair_bridge


@pytest.mark.mock_config(seed={"agents": [{"name": "Ada"}, {"name": "Bob"}]})
async def test_sync_creates_a_room_per_agent(letta_mock, matrix_mock):
    rooms = await oculair_bridge.sync_agents()
    assert sorted(rooms) == ["Ada", "Bob"]
    made = {room["name"]: room for room in matrix_mock.snapshot()["rooms"]}
    assert {name: made[name]["room_id"] for name in rooms} == rooms
    assert all(room["creator"] == "@admin:matrix.oculair.ca" for room in made.values())
    assert [entry.operation for entry in letta_mock.journal()] == ["listAgents"]
    assert matrix_mock.calls("createRoom") == 2


def test_history_through_the_official_client_without_a_token(letta_mock):
    agent = letta_mock.add_agent("Cy")
    kinds = oculair_bridge.history(agent.id)
    [entry] = letta_mock.journal()
    assert (entry.operation, entry.status) == ("listMessages", 200)
    assert kinds == [message["message_type"] for message in entry.response_body]
    assert kinds[0] == "system_message"


def test_a_sync_httpx_client_reaches_the_homeserver(matrix_mock):
    assert "v1.11" in oculair_bridge.homeserver_versions()
    assert matrix_mock.calls("getVersions") == 1
"""


def test_an_unmodified_third_party_client_runs_against_the_mocks(user_venv: Path, project: Path) -> None:
    (project / "oculair_bridge.py").write_text(THIRD_PARTY_CLIENT, encoding="utf-8")
    (project / "pyproject.toml").write_text(THIRD_PARTY_CONFIG, encoding="utf-8")
    (project / "conftest.py").write_text(THIRD_PARTY_CONFTEST, encoding="utf-8")
    (project / "test_bridge.py").write_text(THIRD_PARTY_SUITE, encoding="utf-8")
    connected_file = project / "connected.json"
    done = subprocess.run(
        [str(user_venv / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={**_clean_env(), "CONNECTED_FILE": str(connected_file)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
    assert "warning" not in done.stdout.lower(), done.stdout
    connected = json.loads(connected_file.read_text(encoding="utf-8"))
    assert connected, "the audit hook saw no connection at all"
    # Nothing but the mocks on loopback: no address the client hard-coded, no name resolved elsewhere.
    assert [address for address in connected if not address.startswith("('127.0.0.1', ")] == []
