"""pytest plugin (entry point `pytest11`): `letta_mock` and `matrix_mock` fixtures.

Both mocks run on free loopback ports and share one `World`, reset before every test. They start once and
are restarted only for a test whose configuration differs from theirs (ini options `mockgen_<name>`, the
`@pytest.mark.mock_config(...)` marker: see `mockgen.fixture_config`). With `routes` configured, the
test's aiohttp and httpx requests to those base URLs go to the mocks and any other non-loopback request is
refused (`mockgen.reroute`).

Strict by default: a test fails if the client under test broke the contract in any exchange (or if the
mock's own answer did, which is a mock bug), or if routing refused a request; the test's own outcome and
these are one report. Mark a test `@pytest.mark.mock_lenient` to only record violations.

The mocks guard their control API with a random token: the fixtures act on the world directly, and a test
that calls `/_mock/...` over HTTP sends `control_headers`."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from contracts.validation import Violation
from mockgen import fixture_config
from mockgen.fixture_config import MARKER, FixtureConfig
from mockgen.handles import LettaMock, MatrixMock, MockHandle
from mockgen.journal import Entry
from mockgen.reroute import Routes, routed
from mockgen.server import MockServers
from mockgen.store.errors import ControlError
from mockgen.world import World

__all__ = ["LettaMock", "MatrixMock", "MockHandle", "MockSession"]

LENIENT_MARK = "mock_lenient"
# Bytes of randomness in the session's control token.
CONTROL_TOKEN_BYTES = 32
# Violations shown in a failure; the rest are counted.
SHOWN = 20

_WORLD = pytest.StashKey[World]()
_ROUTES = pytest.StashKey[Routes]()


class MockSession:
    """The running mocks of a session: started on first use, restarted only when a test asks for another
    configuration (`starts` counts the starts)."""

    def __init__(self) -> None:
        self.control_token = secrets.token_urlsafe(CONTROL_TOKEN_BYTES)
        self.servers: MockServers | None = None
        self.started_for: Any = None
        self.starts = 0

    def serve(self, wanted: FixtureConfig) -> MockServers:
        key = wanted.server_key()
        if self.servers is None or key != self.started_for:
            self.stop()
            config = dataclasses.replace(wanted.config, control_token=self.control_token)
            servers = MockServers(World(config))
            servers.start()
            self.servers, self.started_for = servers, key
            self.starts += 1
        return self.servers

    def stop(self) -> None:
        if self.servers is not None:
            self.servers.stop()
            self.servers = None


def pytest_addoption(parser: pytest.Parser) -> None:
    for name in fixture_config.settable():
        help_text = f"mockgen fixtures: {name} (see mockgen.fixture_config)"
        if name == fixture_config.ROUTES:
            parser.addini(fixture_config.INI_PREFIX + name, help_text, "linelist")
        else:
            parser.addini(fixture_config.INI_PREFIX + name, help_text, "string")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{LENIENT_MARK}: record contract violations without failing the test")
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**settings): configure the mocks for this test (server_name, letta_token, seed, "
        "letta_format, routes, ... any MockConfig field)",
    )


def _ini_values(config: pytest.Config) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in fixture_config.settable():
        text = config.getini(fixture_config.INI_PREFIX + name)
        if text:  # unset: "" or []
            values[name] = fixture_config.parse_ini(name, text, config.rootpath)
    return values


@pytest.fixture(scope="session")
def mockgen_session() -> Iterator[MockSession]:
    session = MockSession()
    yield session
    session.stop()


@pytest.fixture
def mock_config(request: pytest.FixtureRequest) -> FixtureConfig:
    """This test's configuration: the ini options, then its `mock_config` markers, farthest first."""
    try:
        values = _ini_values(request.config)
        for mark in reversed(list(request.node.iter_markers(MARKER))):
            if mark.args:
                raise ValueError(f"{MARKER} takes keywords only, e.g. {MARKER}(server_name='example.org')")
            values.update(mark.kwargs)
        return fixture_config.resolve(values, request.config.rootpath)
    except (ValueError, OSError) as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def mockgen_servers(mockgen_session: MockSession, mock_config: FixtureConfig) -> MockServers:
    """Both mock services, configured for this test."""
    try:
        return mockgen_session.serve(mock_config)
    except ControlError as exc:  # a seed or a format the world refuses
        problem = exc.error
    pytest.fail(f"{MARKER}: {problem}", pytrace=False)


@pytest.fixture
def mock_world(
    mockgen_servers: MockServers, mock_config: FixtureConfig, request: pytest.FixtureRequest
) -> Iterator[World]:
    """The shared world, reset for this test, with the test's routes active while it runs."""
    world = mockgen_servers.world
    world.reset()
    request.node.stash[_WORLD] = world
    if not mock_config.routes:
        yield world
        return
    endpoints = {"letta": mockgen_servers.endpoints.letta, "matrix": mockgen_servers.endpoints.matrix}
    with routed({base: endpoints[service] for base, service in mock_config.routes}) as routes:
        request.node.stash[_ROUTES] = routes
        yield world


@pytest.fixture
def letta_mock(mock_world: World, mockgen_servers: MockServers) -> LettaMock:
    return LettaMock(mock_world, mockgen_servers.endpoints.letta)


@pytest.fixture
def matrix_mock(mock_world: World, mockgen_servers: MockServers) -> MatrixMock:
    return MatrixMock(mock_world, mockgen_servers.endpoints.matrix)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """The contract and routing verdicts join the test's own: a failing test gets them as a section of its
    report, a passing one fails with them (one failure, not a failure and an error)."""
    try:
        outcome = yield
    except BaseException:
        found = _broken(item)
        if found:
            item.add_report_section("call", "mockgen", found)
        raise
    found = _broken(item)
    if found:
        pytest.fail(found, pytrace=False)
    return outcome


def _broken(item: pytest.Item) -> str:
    """What the mocks saw go wrong during the test, worded for its report ("" when nothing)."""
    parts: list[str] = []
    routes = item.stash.get(_ROUTES, None)
    if routes is not None and routes.refused:
        shown = "\n  ".join(routes.refused)
        refused = len(routes.refused)
        parts.append(f"{refused} request(s) refused by routing (neither routed nor loopback):\n  {shown}")
    world = item.stash.get(_WORLD, None)
    if world is not None and item.get_closest_marker(LENIENT_MARK) is None:
        entries = [entry for entry in world.journal if entry.violations or entry.violations_omitted]
        total = sum(len(entry.violations) + entry.violations_omitted for entry in entries)
        if total:
            lines = [_exchange(entry, violation) for entry in entries for violation in entry.violations]
            more = f"\n  ... and {total - SHOWN} more" if total > SHOWN else ""
            shown = "\n  ".join(lines[:SHOWN])
            parts.append(f"{total} contract violation(s) in this test:\n  {shown}{more}")
    return "\n".join(parts)


def _exchange(entry: Entry, violation: Violation) -> str:
    return f"{entry.service}: {entry.method} {entry.path} -> {entry.status}: {violation.message}"
