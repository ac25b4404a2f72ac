"""Hostile input gets the service's own error shape, never a 500, and never breaks the mock's contract."""

from __future__ import annotations

import aiohttp
import pytest

from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.support import call, login

pytestmark = pytest.mark.mock_lenient  # these tests break the contract on purpose


def _no_mock_bug(mock: MatrixMock | LettaMock) -> None:
    broken = [v for entry in mock.journal() for v in entry.violations if v.side == "response"]
    assert broken == []
    assert all(entry.status != 500 for entry in mock.journal())


@pytest.mark.parametrize(
    ("data", "content_type", "errcode"),
    [
        (b'{"username": "x",', "application/json", "M_NOT_JSON"),
        (b"[]", "application/json", "M_BAD_JSON"),
        (b'"just a string"', "application/json", "M_BAD_JSON"),
        (b'{"name": "\xff\xfe"}', "application/json", "M_NOT_JSON"),
        (b'{"name": NaN}', "application/json", "M_NOT_JSON"),
        (b"", "application/json", "M_NOT_JSON"),
        (b"\x00\x01binary", "application/octet-stream", "M_NOT_JSON"),
    ],
)
async def test_malformed_bodies(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, data: bytes, content_type: str, errcode: str
) -> None:
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    answer = await call(
        http, "POST", f"{matrix_mock.url}/_matrix/client/v3/createRoom", data=data, token=token,
        headers={"Content-Type": content_type},
    )  # fmt: skip
    assert (answer.status, answer.errcode) == (400, errcode)
    assert answer.headers["Content-Type"] == "application/json"
    _no_mock_bug(matrix_mock)


async def test_wrong_content_type_is_served_like_synapse(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    answer = await call(
        http, "POST", f"{matrix_mock.url}/_matrix/client/v3/createRoom", token=token,
        data=b'{"name": "ctype"}',
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    assert answer.status == 200  # Synapse ignores the header, and so does the mock...
    [entry] = matrix_mock.journal("createRoom")
    assert [v.location for v in entry.violations] == ["request content type"]  # ...but records it


async def test_event_over_64_kib_is_413(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    base = f"{matrix_mock.url}/_matrix/client/v3"
    room_id = (await call(http, "POST", f"{base}/createRoom", token=token, json_body={})).body["room_id"]
    huge = {"msgtype": "m.text", "body": "x" * (2 * 1024 * 1024)}
    answer = await call(
        http, "PUT", f"{base}/rooms/{room_id}/send/m.room.message/big", token=token, json_body=huge
    )
    assert (answer.status, answer.errcode) == (413, "M_TOO_LARGE")
    _no_mock_bug(matrix_mock)


async def test_2_mib_body_on_a_non_event_endpoint(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    answer = await call(
        http, "POST", f"{matrix_mock.url}/_matrix/client/v3/login",
        json_body={"type": "m.login.password", "user": "admin", "password": "p" * (2 * 1024 * 1024)},
    )  # fmt: skip
    assert (answer.status, answer.errcode) == (403, "M_FORBIDDEN")
    _no_mock_bug(matrix_mock)


async def test_body_over_the_listener_limit_drops_the_connection(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matrix_mock.world.config, "max_body_bytes", 1024 * 1024)  # Synapse: 50 MiB
    with pytest.raises(aiohttp.ClientError):
        await call(http, "POST", f"{matrix_mock.url}/_matrix/client/v3/login", data=b"x" * (1024 * 1024 + 1))
    [entry] = matrix_mock.journal()
    assert entry.status == 0  # no answer was sent


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/_matrix/client/v3/no_such_endpoint", 404),
        ("GET", "/_matrix/federation/v1/version", 404),
        ("GET", "/_matrix/client/v2/joined_rooms", 404),
        ("GET", "/_matrix/client/v3/createRoom", 405),
        ("DELETE", "/_matrix/client/v3/login", 405),
        ("GET", "/", 404),
    ],
)
async def test_unknown_routes(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, method: str, path: str, status: int
) -> None:
    answer = await call(http, method, f"{matrix_mock.url}{path}")
    assert answer.status == status
    assert answer.body == {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}
    _no_mock_bug(matrix_mock)
    if status == 405:  # a client violation in strict mode, like an undocumented path
        [entry] = matrix_mock.journal()
        assert [(v.side, v.keyword, v.actual) for v in entry.violations] == [
            ("request", "method", f"{method} {path}")
        ]


@pytest.mark.parametrize(
    ("headers", "query", "errcode", "error"),
    [
        ({}, None, "M_MISSING_TOKEN", "Missing access token"),
        ({"Authorization": "Basic Zm9vOmJhcg=="}, None, "M_MISSING_TOKEN", "Invalid Authorization header."),
        ({"Authorization": "Bearer nope"}, None, "M_UNKNOWN_TOKEN", "Invalid access token passed."),
        (
            {"Authorization": "Bearer a"},
            "b",
            "M_MISSING_TOKEN",
            "Mixing Authorization headers and access_token query parameters.",
        ),
    ],
)
async def test_token_errors(
    http: aiohttp.ClientSession,
    matrix_mock: MatrixMock,
    headers: dict[str, str],
    query: str | None,
    errcode: str,
    error: str,
) -> None:
    params = {"access_token": query} if query else None
    answer = await call(
        http, "GET", f"{matrix_mock.url}/_matrix/client/v3/joined_rooms", headers=headers, params=params
    )
    assert (answer.status, answer.errcode, answer.body["error"]) == (401, errcode, error)


async def test_access_token_in_query(http: aiohttp.ClientSession, matrix_mock: MatrixMock) -> None:
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    answer = await call(
        http, "GET", f"{matrix_mock.url}/_matrix/client/v3/account/whoami", params={"access_token": token}
    )
    assert answer.body["user_id"] == "@admin:matrix.test"


async def test_letta_malformed_body_is_fastapi_422(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    answer = await call(
        http,
        "POST",
        f"{letta_mock.url}/v1/agents/",
        data=b"{bad json",
        token=letta_mock.token,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 422
    assert answer.body["detail"][0]["type"] == "json_invalid"
    assert answer.body["detail"][0]["loc"] == ["body", 1]  # FastAPI: the decoder's character offset
    typed = await call(
        http, "POST", f"{letta_mock.url}/v1/agents/", json_body={"name": 123}, token=letta_mock.token
    )
    assert typed.status == 422
    assert typed.body == {
        "detail": [
            {
                "type": "string_type",
                "loc": ["body", "name"],
                "msg": "Input should be a valid string",
                "input": 123,
            }
        ]
    }
    _no_mock_bug(letta_mock)
