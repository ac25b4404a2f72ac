"""The control API's guard: what a page in a browser can send without asking first is refused (a write that
is not JSON, a foreign Origin), and with a control token nothing gets through without it, on either port."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp
import pytest

from contracts.validation import Operation, fill_template, validator_for
from mockgen import cli
from mockgen.http.dialects import CONTROL_TOKEN_HEADER, WRITE_METHODS
from mockgen.pytest_plugin import CONTROL_TOKEN_BYTES, LettaMock, MatrixMock
from mockgen.world import MockConfig, World
from tests.support import Answer, call

CONTROL = validator_for("control")
EVIL_SEED = {"users": [{"username": "evil", "password": "evil", "admin": True}]}
EVIL_USER = "@evil:matrix.test"
FOREIGN_ORIGINS = ("https://evil.example", "null")
JSON_TYPE = {"Content-Type": "application/json"}
TEXT_TYPE = {"Content-Type": "text/plain;charset=UTF-8"}  # what a browser's fetch sends for a string body
FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}


def _base(service: str, matrix_mock: MatrixMock, letta_mock: LettaMock) -> str:
    return matrix_mock.url if service == "matrix" else letta_mock.url


def _documented(operation: Operation, answer: Answer) -> None:
    """The answer is one the control contract documents for the operation, body and all."""
    problems, _ = CONTROL.check_response(
        operation,
        status=answer.status,
        headers={"content-type": "application/json"},
        body=json.dumps(answer.body).encode(),
    )
    assert problems == [], [p.message for p in problems]


def _path(operation: Operation) -> str:
    examples = {name: param.example for (_, name), param in operation.params.items()}
    return fill_template(operation.path, lambda name: str(examples[name]))


def _unchanged(world: World) -> Callable[[], None]:
    """A check that nothing a control write could do has happened since."""
    before = world.snapshot()

    def check() -> None:
        assert world.snapshot() == before
        assert len(world.faults) == 0

    return check


@pytest.mark.parametrize("service", ["matrix", "letta"])
async def test_every_control_operation_refuses_as_documented(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, letta_mock: LettaMock, service: str
) -> None:
    base = _base(service, matrix_mock, letta_mock)
    token = {CONTROL_TOKEN_HEADER: matrix_mock.control_headers[CONTROL_TOKEN_HEADER]}
    unchanged = _unchanged(matrix_mock.world)
    for operation in CONTROL.operations.values():
        url = f"{base}{_path(operation)}"
        body = "{}" if operation.method in WRITE_METHODS else None
        cases = [(401, JSON_TYPE), (403, {**token, **JSON_TYPE, "Origin": FOREIGN_ORIGINS[0]})]
        if operation.method in WRITE_METHODS:
            cases.append((415, {**token, **TEXT_TYPE}))
        for status, headers in cases:
            answer = await call(http, operation.method, url, data=body, headers=headers)
            assert answer.status == status, (operation.operation_id, answer)
            _documented(operation, answer)
    unchanged()


@pytest.mark.parametrize("service", ["matrix", "letta"])
@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
async def test_a_text_plain_seed_creates_no_admin(
    http: aiohttp.ClientSession,
    matrix_mock: MatrixMock,
    letta_mock: LettaMock,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
    with_token: bool,
) -> None:
    """The drive-by write of the report: a simple cross-origin POST, refused whether or not the mock has a
    token (with one, the right token does not make a text body acceptable either)."""
    headers = {CONTROL_TOKEN_HEADER: matrix_mock.control_headers[CONTROL_TOKEN_HEADER]}
    if not with_token:
        monkeypatch.setattr(matrix_mock.world.config, "control_token", None)
        headers = {}
    base = _base(service, matrix_mock, letta_mock)
    matrix_mock.add_user("kept", "pw")
    unchanged = _unchanged(matrix_mock.world)
    for path, body in (
        ("/_mock/seed", json.dumps(EVIL_SEED).encode()),
        ("/_mock/reset", None),
        ("/_mock/faults", json.dumps({"operation": "login", "status": 500, "times": 0}).encode()),
    ):
        # Text and a form: the types a browser sends cross-origin without a preflight; and none at all
        # (aiohttp then sends no Content-Type for no body, application/octet-stream for bytes).
        for content_type in (TEXT_TYPE, FORM_TYPE, {}):
            answer = await call(http, "POST", f"{base}{path}", data=body, headers={**headers, **content_type})
            assert (answer.status, set(answer.body)) == (415, {"error"}), (path, content_type, answer)
    unchanged()
    assert EVIL_USER not in {user["user_id"] for user in matrix_mock.snapshot()["users"]}


@pytest.mark.parametrize("service", ["matrix", "letta"])
async def test_a_foreign_origin_is_refused_without_a_token_too(
    http: aiohttp.ClientSession,
    matrix_mock: MatrixMock,
    letta_mock: LettaMock,
    monkeypatch: pytest.MonkeyPatch,
    service: str,
) -> None:
    monkeypatch.setattr(matrix_mock.world.config, "control_token", None)
    base = _base(service, matrix_mock, letta_mock)
    other = letta_mock.url if service == "matrix" else matrix_mock.url
    port = base.rsplit(":", 1)[1]
    unchanged = _unchanged(matrix_mock.world)
    # A foreign site; a sandboxed page; a DNS-rebinding page (its host resolves here, its origin is its
    # own); the mock's other port (another origin).
    for origin in (*FOREIGN_ORIGINS, f"http://evil.example:{port}", other):
        for method, path, body in (
            ("POST", "/_mock/seed", json.dumps(EVIL_SEED)),
            ("GET", "/_mock/state", None),
        ):
            answer = await call(
                http, method, f"{base}{path}", data=body, headers={**JSON_TYPE, "Origin": origin}
            )
            assert answer.status == 403, (origin, method, answer)
    unchanged()
    # The server's own origin is no reason to refuse; without a token set, a JSON write goes through.
    own = await call(http, "GET", f"{base}/_mock/health", headers={"Origin": base})
    assert own.status == 200
    seeded = await call(
        http, "POST", f"{base}/_mock/seed", json_body={"users": [{"username": "ok", "password": "p"}]}
    )
    assert seeded.status == 200


@pytest.mark.parametrize("service", ["matrix", "letta"])
async def test_with_a_control_token_every_control_call_needs_it(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, letta_mock: LettaMock, service: str
) -> None:
    base = _base(service, matrix_mock, letta_mock)
    right = matrix_mock.control_headers
    wrong = {**right, CONTROL_TOKEN_HEADER: right[CONTROL_TOKEN_HEADER] + "x"}
    # Letta's own token opened the control API on Letta's port before; no credential of a service does now.
    service_token = {**JSON_TYPE, "Authorization": f"Bearer {letta_mock.token}"}
    unchanged = _unchanged(matrix_mock.world)
    for headers in (JSON_TYPE, wrong, service_token):
        for method, path in (("GET", "/_mock/health"), ("POST", "/_mock/reset"), ("GET", "/_mock/nosuch")):
            answer = await call(http, method, f"{base}{path}", headers=headers)
            assert answer.status == 401, (headers, method, path, answer)
        seed = await call(http, "POST", f"{base}/_mock/seed", json_body=EVIL_SEED, headers=headers)
        assert seed.status == 401
    unchanged()
    assert (await call(http, "GET", f"{base}/_mock/health", headers=right)).status == 200
    assert (await call(http, "POST", f"{base}/_mock/reset", headers=right)).status == 200
    assert (await call(http, "GET", f"{base}/_mock/nosuch", headers=right)).status == 404


def test_the_plugin_hands_out_its_random_control_token(
    matrix_mock: MatrixMock, letta_mock: LettaMock
) -> None:
    token = matrix_mock.control_token
    assert token is not None
    assert len(token) >= CONTROL_TOKEN_BYTES  # URL-safe base64 of that many random bytes
    assert letta_mock.control_headers == {CONTROL_TOKEN_HEADER: token, "Content-Type": "application/json"}


class _Built(Exception):
    """Raised in place of building the world: the test has what it wanted before a port is bound."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config


def _stop_at_the_world(config: MockConfig) -> World:
    raise _Built(config)


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (["--control-token", "from-argv"], {}, "from-argv"),
        ([], {cli.CONTROL_TOKEN_ENV: "from-env"}, "from-env"),
        (["--control-token", "from-argv"], {cli.CONTROL_TOKEN_ENV: "from-env"}, "from-argv"),
        ([], {}, None),
    ],
)
def test_serve_takes_the_control_token_from_the_command_line_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], environment: dict[str, str], expected: str | None
) -> None:
    monkeypatch.delenv(cli.CONTROL_TOKEN_ENV, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli, "World", _stop_at_the_world)
    with pytest.raises(_Built) as built:
        cli.serve(cli._parser().parse_args(["serve", *argv]))
    assert built.value.config.control_token == expected
