"""Letta 0.11.7 as probed (the issue 12 probes, classes L, X, W, H): how FastAPI reads a body, the
password middleware's exact compare, which id checks run where, HEAD and repeated query parameters."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from mockgen.pytest_plugin import LettaMock
from tests.support import call

pytestmark = pytest.mark.mock_lenient  # every request here is wrong on purpose

MISSING_BODY = [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
NOT_AN_OBJECT = "Input should be a valid dictionary or object to extract fields from"


@pytest.mark.parametrize(
    ("content_type", "raw", "detail"),
    [
        # LD701 LD703 LD707-LD709: a media type FastAPI does not read as JSON leaves the raw text.
        ("text/plain", b'{"name":"x"}', [("model_attributes_type", ["body"], NOT_AN_OBJECT, '{"name":"x"}')]),
        ("application/jsonx", b"{}", [("model_attributes_type", ["body"], NOT_AN_OBJECT, "{}")]),
        ("text/json", b"{}", [("model_attributes_type", ["body"], NOT_AN_OBJECT, "{}")]),
        (
            "multipart/form-data; boundary=x",
            b"{}",
            [("model_attributes_type", ["body"], NOT_AN_OBJECT, "{}")],
        ),
        # LD723: not parsed, so malformed JSON is not json_invalid.
        ("text/plain", b"{x", [("model_attributes_type", ["body"], NOT_AN_OBJECT, "{x")]),
        # LB06 LD59 LD60: the decoder's character offset and bare message.
        ("application/json", b"{x", [("json_invalid", ["body", 1], "JSON decode error", {})]),
        ("application/json", b'{"name": "x"} x', [("json_invalid", ["body", 14], "JSON decode error", {})]),
        # LD45-LD47: no body, or null, is a missing body.
        ("application/json", b"", [("missing", ["body"], "Field required", None)]),
        ("application/json", b"null", [("missing", ["body"], "Field required", None)]),
        ("text/plain", b"", [("missing", ["body"], "Field required", None)]),
    ],
)
async def test_fastapi_reads_the_body_by_its_media_type(
    http: aiohttp.ClientSession, letta_mock: LettaMock, content_type: str, raw: bytes, detail: list[Any]
) -> None:
    agent = letta_mock.add_agent("reader")
    answer = await call(
        http,
        "PATCH",
        f"{letta_mock.url}/v1/agents/{agent.id}",
        data=raw,
        token=letta_mock.token,
        headers={"Content-Type": content_type},
    )
    assert answer.status == 422, answer.body
    assert [(i["type"], i["loc"], i["msg"], i["input"]) for i in answer.body["detail"]] == detail


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json"]
)
async def test_json_media_types_are_read_as_json(
    http: aiohttp.ClientSession, letta_mock: LettaMock, content_type: str
) -> None:
    agent = letta_mock.add_agent("reader")
    answer = await call(
        http,
        "PATCH",
        f"{letta_mock.url}/v1/agents/{agent.id}",
        data=b'{"name": "renamed"}',
        token=letta_mock.token,
        headers={"Content-Type": content_type},
    )
    assert (answer.status, answer.body["name"]) == (200, "renamed")


async def test_create_with_text_plain_creates_nothing(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    answer = await call(
        http,
        "POST",
        f"{letta_mock.url}/v1/agents/",
        data=b'{"name": "x", "model": "letta/letta-free"}',
        token=letta_mock.token,
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status == 422  # LD720
    assert letta_mock.world.letta.agents == {}


async def test_pydantic_words(http: aiohttp.ClientSession, letta_mock: LettaMock) -> None:
    agent = letta_mock.add_agent("words")
    url = f"{letta_mock.url}/v1/agents/"
    metadata = await call(
        http, "PATCH", f"{url}{agent.id}", json_body={"metadata": "x"}, token=letta_mock.token
    )
    assert metadata.body["detail"] == [  # LD55
        {
            "type": "dict_type",
            "loc": ["body", "metadata"],
            "msg": "Input should be a valid dictionary",
            "input": "x",
        }
    ]
    created = await call(
        http,
        "POST",
        url,
        json_body={"name": "a+b", "model": "letta-free", "embedding": "/x"},
        token=letta_mock.token,
    )
    assert created.body["detail"] == [  # LD80 LD84 (and the embedding's own words)
        {
            "type": "value_error",
            "loc": ["body", "name"],
            "msg": "Value error, Name contains invalid characters.",
            "input": "a+b",
            "ctx": {"error": {}},
        },
        {
            "type": "value_error",
            "loc": ["body", "model"],
            "msg": "Value error, not enough values to unpack (expected 2, got 1)",
            "input": "letta-free",
            "ctx": {"error": {}},
        },
        {
            "type": "value_error",
            "loc": ["body", "embedding"],
            "msg": "Value error, The embedding config handle should be in the format provider/model-name",
            "input": "/x",
            "ctx": {"error": {}},
        },
    ]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": "bearer {token}"}, 401),  # LD301
        ({"Authorization": "BEARER {token}"}, 401),  # LD302
        ({"Authorization": "Bearer  {token}"}, 401),
        ({"X-BARE-PASSWORD": "password {token}"}, 200),
        ({"Authorization": "Bearer wrong", "X-BARE-PASSWORD": "password {token}"}, 200),
    ],
)
async def test_the_password_is_compared_exactly(
    http: aiohttp.ClientSession, letta_mock: LettaMock, headers: dict[str, str], status: int
) -> None:
    sent = {name: value.format(token=letta_mock.token) for name, value in headers.items()}
    answer = await call(http, "GET", f"{letta_mock.url}/v1/agents/", headers=sent)
    assert answer.status == status


async def test_methods_head_and_repeated_parameters(
    http: aiohttp.ClientSession, letta_mock: LettaMock
) -> None:
    base = letta_mock.url
    # LB14: the password middleware runs before the router.
    assert (await call(http, "PUT", f"{base}/v1/agents/")).status == 401
    assert (await call(http, "PUT", f"{base}/v1/agents/", token=letta_mock.token)).status == 405
    assert (await call(http, "PUT", f"{base}/v1/health/")).status == 405  # health needs no token
    # LB36 LD96: FastAPI routes do not answer HEAD.
    assert (await call(http, "HEAD", f"{base}/v1/agents/", token=letta_mock.token)).status == 405
    assert (await call(http, "HEAD", f"{base}/v1/health/")).status == 405
    # LD65: the last value counts.
    twice = await call(http, "GET", f"{base}/v1/agents/?limit=2&limit=abc", token=letta_mock.token)
    assert (twice.status, twice.body["detail"][0]["input"]) == (422, "abc")
    # LD63: any sort_by; LD64: a limit SQLite cannot bind is a 500.
    assert (await call(http, "GET", f"{base}/v1/agents/?sort_by=bogus", token=letta_mock.token)).status == 200
    huge = await call(http, "GET", f"{base}/v1/agents/?limit=99999999999999999999", token=letta_mock.token)
    assert (huge.status, huge.body) == (500, {"detail": "An internal server error occurred"})


@pytest.mark.parametrize("depth", [500, 990, 5000])
async def test_a_body_nested_past_any_decoder_is_a_422_not_a_crash(
    http: aiohttp.ClientSession, letta_mock: LettaMock, depth: int
) -> None:
    """Past ~990 levels Python's decoder raises RecursionError where FastAPI's reading of the body is
    re-created: still json_invalid, never a 500 (the review found the 500)."""
    body = "[" * depth + "]" * depth
    answer = await call(
        http, "POST", f"{letta_mock.url}/v1/agents/", data=body, headers={**letta_mock.headers,
        "Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status == 422
    assert answer.body["detail"][0]["type"] == "json_invalid"
