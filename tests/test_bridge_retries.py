"""The bridge's HTTP layer: retries, backoff, Retry-After, lost connections, timeouts, answers that are not
JSON. Against the strict mocks, and against small hand-made servers for what no contract-abiding server
would do."""

from __future__ import annotations

import random
import socket
import ssl
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey

from letta_matrix_reference.bridge import ApiError, ConfigurationError, ProtocolError, RetriesExhausted
from letta_matrix_reference.bridge.http import JsonClient, Response, retry_after_seconds
from mockgen.pytest_plugin import LettaMock, MatrixMock
from tests.bridge_support import CLIENT_TIMEOUT, Sleeps, homeserver, letta_client, policy

TIMEOUT = 5.0


# -- retry policy and Retry-After, no network


def test_backoff_doubles_up_to_the_cap_with_equal_jitter() -> None:
    retry, rng = policy(base=0.5, cap=4.0), random.Random(7)
    for n, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (12, 4.0)]:
        for _ in range(50):
            assert ceiling / 2 <= retry.backoff(n, rng) <= ceiling
    with pytest.raises(ValueError, match="backoff_cap"):
        policy(cap=0.0)  # looking for a lost request's effect would never pause, and never end


def test_retry_after_takes_the_longer_of_body_and_header() -> None:
    def answer(body: Any, header: str | None = None) -> Response:
        return Response(429, body, {"Retry-After": header} if header is not None else {})

    assert retry_after_seconds(answer({"retry_after_ms": 5347})) == pytest.approx(5.347)
    assert retry_after_seconds(answer({"retry_after_ms": 5347}, "6")) == 6.0
    assert retry_after_seconds(answer({"retry_after_ms": 9000}, "6")) == 9.0
    assert retry_after_seconds(answer({"detail": "Too Many Requests"}, "3")) == 3.0
    assert retry_after_seconds(answer({"errcode": "M_LIMIT_EXCEEDED"})) is None
    assert retry_after_seconds(answer({"retry_after_ms": "soon"}, "later")) is None
    assert retry_after_seconds(answer(None, "²")) is None  # a digit to str.isdigit, not to float()
    now = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert retry_after_seconds(answer(None, date), now=now) == 42.0
    assert policy(cap=30.0).server_delay(600.0) == 30.0


async def test_looking_for_a_lost_request_pauses_no_longer_than_the_cap(sleeps: Sleeps) -> None:
    async def never_there() -> None:
        return None

    client = JsonClient("http://unused.invalid", timeout=4.0, retry=policy(cap=1.0), sleep=sleeps)
    assert await client._settle(never_there) is None
    assert sleeps.delays == [0.5, 1.0, 1.0, 1.0, 1.0]  # and still longer than a request may take


async def test_a_client_must_be_opened_and_keeps_one_session(letta_mock: LettaMock, sleeps: Sleeps) -> None:
    client = letta_client(letta_mock.url, letta_mock.token, sleeps)
    with pytest.raises(RuntimeError, match="async context manager"):
        await client.list_agents()
    async with client:
        session = client._session
        await client.list_agents()
        await client.list_agents()
        assert client._session is session
    assert client._session is None


# -- retries against the mock


async def test_429_waits_what_the_server_asks(matrix_mock: MatrixMock, sleeps: Sleeps) -> None:
    # The mock's header says ceil(1.5) = 2 s, the body 1.5 s: the longer wins.
    matrix_mock.inject("login", rate_limit={"retry_after_ms": 1500})
    # A body that asks for longer than the header: the body wins.
    matrix_mock.inject("login", rate_limit={"retry_after_ms": 4000}, headers={"Retry-After": "1"})
    # Far too long: capped.
    matrix_mock.inject("login", rate_limit={"retry_after_ms": 3_600_000})
    async with homeserver(matrix_mock.url, sleeps) as server:
        client = await server.login("admin", "admin_password")
    assert client.user_id == "@admin:matrix.test"
    assert sleeps.delays == [2.0, 4.0, 30.0]
    assert matrix_mock.calls("login") == 4


async def test_letta_429_waits_for_retry_after(letta_mock: LettaMock, sleeps: Sleeps) -> None:
    letta_mock.add_agents(2)
    letta_mock.inject("listAgents", rate_limit={"retry_after_ms": 3000}, times=2)
    async with letta_client(letta_mock.url, letta_mock.token, sleeps) as letta:
        listing = await letta.list_agents()
    assert len(listing.agents) == 2
    assert sleeps.delays == [3.0, 3.0]


async def test_5xx_is_retried_then_given_up_after_max_attempts(
    matrix_mock: MatrixMock, sleeps: Sleeps
) -> None:
    matrix_mock.inject("login", status=500, times=0)
    async with homeserver(matrix_mock.url, sleeps, retry=policy(attempts=4, base=0.5)) as server:
        with pytest.raises(RetriesExhausted) as raised:
            await server.login("admin", "admin_password")
    assert raised.value.attempts == 4
    assert "500" in str(raised.value)
    assert matrix_mock.calls("login") == 4
    assert len(sleeps.delays) == 3
    for retry, delay in enumerate(sleeps.delays, start=1):
        assert 0.25 * 2 ** (retry - 1) <= delay <= 0.5 * 2 ** (retry - 1)  # exponential, jittered


async def test_5xx_recovers_within_the_bound(letta_mock: LettaMock, sleeps: Sleeps) -> None:
    letta_mock.add_agents(1)
    letta_mock.inject("listAgents", status=500, times=3)
    async with letta_client(letta_mock.url, letta_mock.token, sleeps) as letta:
        assert len((await letta.list_agents()).agents) == 1
    assert len(sleeps.delays) == 3


async def test_4xx_is_not_retried(matrix_mock: MatrixMock, sleeps: Sleeps) -> None:
    async with homeserver(matrix_mock.url, sleeps) as server:
        with pytest.raises(ApiError) as raised:
            await server.login("admin", "wrong")
    assert (raised.value.status, raised.value.errcode) == (403, "M_FORBIDDEN")
    assert "Invalid username or password" in str(raised.value)
    assert sleeps.delays == []


# No contract documents these (so the strict mock will not inject them), but any server may answer them.
@pytest.mark.parametrize("status", [501, 505])
async def test_a_5xx_that_asking_again_will_not_change_is_not_retried(
    fake: Any, sleeps: Sleeps, status: int
) -> None:
    app, hits = web.Application(), []

    async def refuse(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"detail": "not here"}, status=status)

    app.router.add_get("/x", refuse)
    async with JsonClient(await fake(app), timeout=CLIENT_TIMEOUT, retry=policy(), sleep=sleeps) as client:
        with pytest.raises(ApiError) as raised:
            await client.request("GET", "/x")
    assert raised.value.status == status
    assert (len(hits), sleeps.delays) == (1, [])


async def test_an_untrusted_certificate_is_a_configuration_error(
    sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def untrusted(*args: Any, **kwargs: Any) -> None:
        key = ConnectionKey("matrix.invalid", 443, True, True, None, None, None, None)
        raise aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError("self-signed"))

    monkeypatch.setattr(aiohttp.ClientSession, "_request", untrusted)
    async with homeserver("https://matrix.invalid", sleeps) as server:
        with pytest.raises(ConfigurationError, match="TLS certificate is not trusted"):
            await server.login("admin", "admin_password")
    assert sleeps.delays == []


@pytest.mark.parametrize(("drops", "ours"), [(1, 0), (2, 1), (3, 1)])
async def test_dropped_connections_on_an_idempotent_request(
    matrix_mock: MatrixMock, sleeps: Sleeps, drops: int, ours: int
) -> None:
    """aiohttp itself resends an idempotent request once after a dropped keep-alive connection; the
    bridge's own retries take over after that."""
    async with homeserver(matrix_mock.url, sleeps) as server:
        admin = await server.login("admin", "admin_password")
        matrix_mock.inject("getJoinedRooms", drop_connection=True, times=drops)
        assert await admin.joined_rooms() == []
    assert len(sleeps.delays) == ours
    assert matrix_mock.calls("getJoinedRooms") == drops + 1


async def test_dropped_connection_on_a_post_is_retried_by_the_bridge(
    matrix_mock: MatrixMock, sleeps: Sleeps
) -> None:
    matrix_mock.inject("login", drop_connection=True, times=2)
    async with homeserver(matrix_mock.url, sleeps) as server:
        await server.login("admin", "admin_password")
    assert len(sleeps.delays) == 2  # a POST is never resent by aiohttp


async def test_dropped_connections_until_the_attempts_run_out(
    matrix_mock: MatrixMock, sleeps: Sleeps
) -> None:
    matrix_mock.inject("login", drop_connection=True, times=0)
    async with homeserver(matrix_mock.url, sleeps, retry=policy(attempts=3)) as server:
        with pytest.raises(RetriesExhausted, match="ServerDisconnectedError"):
            await server.login("admin", "admin_password")


async def test_a_slow_answer_times_out_and_is_retried(matrix_mock: MatrixMock, sleeps: Sleeps) -> None:
    matrix_mock.inject("login", latency_ms=1000, status=500)
    async with homeserver(matrix_mock.url, sleeps, timeout=0.2) as server:
        await server.login("admin", "admin_password")
    assert len(sleeps.delays) == 1


async def test_a_server_that_is_not_there(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with homeserver(f"http://127.0.0.1:{port}", sleeps, retry=policy(attempts=2)) as server:
        with pytest.raises(RetriesExhausted, match="cannot connect") as raised:
            await server.login("admin", "admin_password")
    assert raised.value.attempts == 2


# An HTML page, and JSON nested deeper than the parser goes (a RecursionError, not a ValueError).
@pytest.mark.parametrize("body", [b"<html>proxy login</html>", b"[" * 100_000])
async def test_a_2xx_without_json_is_a_protocol_error(fake: Any, sleeps: Sleeps, body: bytes) -> None:
    app = web.Application()

    async def html(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html")

    app.router.add_get("/v1/agents/", html)
    async with letta_client(await fake(app), "t", sleeps) as letta:
        with pytest.raises(ProtocolError, match="without JSON"):
            await letta.list_agents()
