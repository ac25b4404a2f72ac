"""Routing unmodified clients to the mocks (mockgen.reroute) and the library hooks under it
(mockgen.intercept)."""

from __future__ import annotations

import inspect

import aiohttp
import httpx
import pytest

from contracts.loopback import is_loopback
from mockgen import intercept
from mockgen.pytest_plugin import LettaMock, MatrixMock
from mockgen.reroute import Routes, UnroutedRequest, origin_of, routed

LETTA_BASE = "http://192.168.50.90:8289"
MATRIX_BASE = "http://test-synapse:8008"
TIMEOUT = 10


def test_hook_points_are_where_intercept_expects_them() -> None:
    """Fails loudly when an aiohttp or httpx release moves what mockgen.intercept wraps."""
    connect = aiohttp.BaseConnector.__dict__["connect"]
    assert inspect.iscoroutinefunction(connect)
    assert list(inspect.signature(connect).parameters)[:4] == ["self", "req", "traces", "timeout"]
    for subclass in (aiohttp.TCPConnector, aiohttp.UnixConnector):
        assert "connect" not in subclass.__dict__, f"{subclass.__name__} overrides connect: wrap it too"
    # The connection key (pool, DNS, socket) is read from the request's url after connect is called.
    source = inspect.getsource(aiohttp.ClientRequest.connection_key.fget)  # type: ignore[attr-defined]
    assert "self.url" in source
    assert inspect.iscoroutinefunction(httpx.AsyncHTTPTransport.__dict__["handle_async_request"])
    assert callable(httpx.HTTPTransport.__dict__["handle_request"])
    request = httpx.Request("GET", "http://example.invalid/x", headers={"Host": "kept"})
    request.url = request.url.copy_with(host="127.0.0.1", port=1)
    assert (request.url.host, request.url.port, request.headers["host"]) == ("127.0.0.1", 1, "kept")


def test_the_hooks_are_in_place_only_while_routing() -> None:
    original = aiohttp.BaseConnector.connect
    with routed({}):
        assert intercept.installed()
        assert aiohttp.BaseConnector.connect is not original
        with routed({}):  # nested
            assert intercept.installed()
        assert intercept.installed()
    assert not intercept.installed()
    assert aiohttp.BaseConnector.connect is original


async def _third_party_aiohttp(token: str) -> tuple[int, object]:
    """Code under test: its own session, its own hard-coded URL (no trailing slash: Letta redirects)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
        session.get(f"{LETTA_BASE}/v1/agents", headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        return answer.status, await answer.json()


async def test_an_aiohttp_session_of_third_party_code_reaches_the_letta_mock(letta_mock: LettaMock) -> None:
    letta_mock.add_agents(2)
    with routed({LETTA_BASE: letta_mock.url}) as routes:
        status, agents = await _third_party_aiohttp(letta_mock.token)
    assert status == 200
    assert isinstance(agents, list)
    assert len(agents) == 2
    # The 307 to the slashed path named the host the client used, and was routed again.
    assert [(e.path, e.status) for e in letta_mock.journal()] == [("/v1/agents", 307), ("/v1/agents/", 200)]
    assert routes.refused == []


def test_a_sync_httpx_client_reaches_the_matrix_mock(matrix_mock: MatrixMock) -> None:
    with routed({MATRIX_BASE: matrix_mock.url}), httpx.Client(timeout=TIMEOUT) as client:
        answer = client.get(f"{MATRIX_BASE}/_matrix/client/versions")
        with pytest.raises(UnroutedRequest, match=r"http://10\.1\.2\.3/"):
            client.get("http://10.1.2.3/")
    assert answer.status_code == 200
    assert "v1.11" in answer.json()["versions"]
    assert matrix_mock.calls("getVersions") == 1


async def test_an_async_httpx_client_reaches_both_mocks(
    letta_mock: LettaMock, matrix_mock: MatrixMock
) -> None:
    routes = {LETTA_BASE: letta_mock.url, "https://Test-Synapse:8448": matrix_mock.url}
    with routed(routes):
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            letta = await client.get(f"{LETTA_BASE}/v1/health/")
            matrix = await client.get("https://test-synapse:8448/_matrix/client/versions")
    assert (letta.status_code, matrix.status_code) == (200, 200)


async def test_an_unrouted_address_is_refused_by_name_before_any_connection() -> None:
    started: list[str] = []

    async def on_start(*_: object) -> None:
        started.append("connect or resolve")

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(on_start)
    trace.on_dns_resolvehost_start.append(on_start)
    with routed({LETTA_BASE: "http://127.0.0.1:1"}) as routes:
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            with pytest.raises(UnroutedRequest, match=r"http://203\.0\.113\.7:8289/v1/agents/"):
                await session.get("http://203.0.113.7:8289/v1/agents/")
            with pytest.raises(UnroutedRequest, match=r"http://192\.168\.50\.90:8290/"):
                await session.get("http://192.168.50.90:8290/")  # the routed host, another port
        async with httpx.AsyncClient() as client:
            with pytest.raises(UnroutedRequest, match=r"https://matrix\.example\.org"):
                await client.get("https://matrix.example.org/_matrix/client/versions")
    assert started == []
    assert routes.refused == [
        "http://203.0.113.7:8289/v1/agents/",
        "http://192.168.50.90:8290/",
        "https://matrix.example.org/_matrix/client/versions",
    ]


async def test_loopback_passes_untouched(matrix_mock: MatrixMock) -> None:
    with routed({}) as routes:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
            session.get(f"{matrix_mock.url}/_matrix/client/versions") as answer,
        ):
            assert answer.status == 200
    assert routes.refused == []


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("LocalHost.", True), ("api.localhost", False), ("192.168.50.90", False), ("10.0.0.1", False),
     ("test-synapse", False), ("::ffff:10.0.0.1", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_routes_name_an_origin_and_lead_to_loopback() -> None:
    assert str(origin_of("http://Test-Synapse")) == "http://test-synapse:80"
    assert str(origin_of("https://[2001:db8::1]/")) == "https://[2001:db8::1]:443"
    for bad in ("ftp://x", "http://x:8008/api", "http://x?y=1", "http://u:p@x", "http://x:99999", "x"):
        with pytest.raises(ValueError, match="route"):
            origin_of(bad)
    with pytest.raises(ValueError, match="on http://loopback"):
        Routes({LETTA_BASE: "http://10.0.0.2:8283"})


async def test_aiohttp_https_routes_and_proxies(matrix_mock: MatrixMock) -> None:
    versions = "/_matrix/client/versions"
    with routed({MATRIX_BASE: matrix_mock.url, "https://matrix.example.org": matrix_mock.url}) as routes:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
            async with session.get(f"{MATRIX_BASE}{versions}", proxy="http://10.0.0.9:3128") as answer:
                assert answer.status == 200
            async with session.get(f"https://matrix.example.org{versions}") as answer:
                assert answer.status == 200  # no TLS to the mock
            with pytest.raises(UnroutedRequest, match=r"through the proxy http://10\.0\.0\.9:3128"):
                await session.get(f"{matrix_mock.url}{versions}", proxy="http://10.0.0.9:3128")
    assert routes.refused == [f"{matrix_mock.url}{versions} (through the proxy http://10.0.0.9:3128)"]
