"""Schemathesis, run against our own mock with our own specs: every operation, its default checks, then its
stateful phase (call sequences chained by the links Schemathesis infers: a created room's id into its state,
members, history, sends; an agent's id into its reads, renames, messages and deletion).

Each generated case (each scenario, in the stateful phase) starts from a freshly reset world (a real server
would remember every earlier case), and a generated bearer token is swapped for a real one, so authenticated
cases reach the handlers; cases where Schemathesis left the token out on purpose still go without one."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from contracts.specs import resolved_copy
from mockgen.pytest_plugin import LettaMock, MatrixMock

MATRIX = schemathesis.openapi.from_dict(resolved_copy("matrix"))
LETTA = schemathesis.openapi.from_dict(resolved_copy("letta"))
# Schemathesis's coverage phase (boundary and near-miss values of every parameter and field) is built at
# collection, in every xdist worker, and doubles this file's cost; `make fuzz` turns it on, `make test` runs
# the examples and fuzzing phases.
for schema in (MATRIX, LETTA):
    schema.config.phases.coverage.enabled = os.environ.get("CONTRACTS_SCHEMATHESIS_COVERAGE") == "1"
# Examples per operation: the profile's (ci: 8, derandomized).
PER_CASE_STATE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

# Answers the contract documents but Schemathesis's "valid data is accepted" check cannot know about:
EXCLUDED: dict[str, list[Any]] = {
    # Whether a user id is local depends on the server's name, which a contract cannot know; Synapse
    # answers 400 for ids on other servers.
    "adminGetUser": [positive_data_acceptance],
    "adminPutUser": [positive_data_acceptance],
    # Synapse reads a profile's user id with UserID.is_valid: a sigil, a colon and a valid server name after
    # it (`@:«:ã` names the server `«` on the port `ã`), else 400 M_INVALID_PARAM "Invalid user id"; the
    # schema's pattern cannot say what a server name is.
    "getDisplayName": [positive_data_acceptance],
    # A display name is only the requester's own to set, and only on this server (403, or 400 "User is not
    # hosted on this homeserver"): who is logged in decides, not the schema.
    "setDisplayName": [positive_data_acceptance],
    # A user-interactive-auth session id is only valid once the server has issued it; Synapse answers an
    # unknown one with 400.
    "register": [positive_data_acceptance],
    # Any string is a room version to the schema; a server answers 400 M_UNSUPPORTED_ROOM_VERSION to one it
    # does not support, as it answers an alias that is taken or malformed (M_ROOM_IN_USE, M_INVALID_PARAM).
    "createRoom": [positive_data_acceptance],
    # Event content is free-form to the schema, but from room version 6 a server refuses what is not canonical
    # JSON (floats, integers beyond 2**53 - 1) with 400 M_BAD_JSON.
    "sendMessage": [positive_data_acceptance],
    "setRoomState": [positive_data_acceptance],
    "setRoomStateWithKey": [positive_data_acceptance],
    # A join that needs another server (an alias on another server, an unknown room id with a remote `via`)
    # is a documented 502 on a homeserver without federation; which servers are remote depends on the
    # server's name, and whether a room or alias exists on state.
    "joinRoom": [not_a_server_error],
    # Any user id is one to the schema; Synapse answers 400 to another user's (M_FORBIDDEN) or one of another
    # server (M_UNKNOWN) in the typing path.
    "setTyping": [positive_data_acceptance],
    # A thread_id is refused with m.fully_read, and must name the event's thread: 400 M_INVALID_PARAM.
    "postReceipt": [positive_data_acceptance],
    # A filter id names a filter only once the user stored one, a `since` is only as good as the server's
    # stream, and an inline filter must be JSON: 400s that state decides, not the schema.
    "sync": [positive_data_acceptance],
    # A room's history is readable only by its members (403 otherwise), and a filter must be JSON (400).
    "getRoomEvents": [positive_data_acceptance],
    # Letta 0.11.7 answers 500 to a create without a usable model; the mock does the same.
    "createAgent": [not_a_server_error],
    # Letta 0.11.7 answers 500 to a message from the `assistant` role (and the mock as it does).
    "sendAgentMessage": [not_a_server_error],
    "streamAgentMessage": [not_a_server_error],
    # Letta 0.11.7 on SQLite answers 500 to a list `limit` beyond 64 bits (the schema says integer, as the
    # server's own document does); the mock does the same.
    "listAgents": [not_a_server_error],
}


def _excluded(case: Any, response: Any, mock: MatrixMock | LettaMock, journaled: int) -> list[Any]:
    """What not to ask of this answer; `journaled` is the journal's last entry before the request."""
    excluded = EXCLUDED.get(_operation_id(case), [])
    if mock.world.journal.last_seq == journaled:
        # The request never reached an operation: uvicorn refused it as malformed HTTP (Schemathesis can
        # send a header its parser rejects, such as an empty Transfer-Encoding) and the mock answered in the
        # service's dialect, as the real server's HTTP layer does. No operation's contract speaks of it.
        excluded = [*excluded, status_code_conformance]
    if 200 <= response.status_code < 300 and _served_by_the_contract(mock):
        # Schemathesis's negative data is a request its own reading of the schema calls invalid; the contract
        # marks the constraints Synapse does not enforce (x-accepted-by-server: a membership `reason` of any
        # JSON type, a createRoom `visibility` outside the enum) and leaves unknown query parameters free,
        # as Synapse ignores them. When our validator found nothing else wrong, serving it is right.
        excluded = [*excluded, negative_data_rejection]
    if str(response.headers.get("content-type", [""])[0]).startswith("text/event-stream"):
        # Schemathesis reads an Open API 3.0 event-stream schema as one event with `data` the raw string; the
        # contract describes `data` parsed as JSON (3.0 has no contentSchema), which our validator checks in
        # _no_mock_bug, event by event.
        excluded = [*excluded, response_schema_conformance]
    return excluded


def _served_by_the_contract(mock: MatrixMock | LettaMock) -> bool:
    """The last request the mock took broke no constraint the real server enforces."""
    entries = mock.journal()
    return bool(entries) and all(v.accepted for v in entries[-1].violations if v.side == "request")


def _operation_id(case: Any) -> str:
    return str(case.operation.definition.raw["operationId"])


def _no_mock_bug(mock: MatrixMock | LettaMock) -> None:
    """Our own validator agrees: whatever Schemathesis sent, no answer of the mock broke the contract."""
    assert [v for entry in mock.journal() for v in entry.violations if v.side == "response"] == []


# A /sync with nothing new waits as long as its `timeout` asks (up to any size); Schemathesis's client gives
# up after 10 s. The wait itself is tested in tests/test_mock_sync.py.
LONG_POLL_BOUND_MS = 100


def _bound_long_poll(case: Any) -> None:
    if _operation_id(case) != "sync":
        return
    try:
        # int() reads more than ASCII digits ("١٢"), and str.isdigit() takes what int() does not ("²").
        timeout = int(str((case.query or {}).get("timeout", "")))
    except ValueError:
        return  # no number: nothing to wait for
    if timeout > LONG_POLL_BOUND_MS:
        case.query["timeout"] = str(LONG_POLL_BOUND_MS)


def _no_mock_crash(caplog: pytest.LogCaptureFixture) -> None:
    """No handler raised: the 500s excused above are the documented ones, never a crash of the mock (whose
    body can look the same), which the exchange layer logs."""
    crashes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mock handler failed")]
    assert crashes == []


def _with_real_token(case: Any, token: str) -> dict[str, str]:
    headers = dict(case.headers or {})
    if "Authorization" in headers:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@pytest.mark.mock_lenient
@MATRIX.parametrize()
@PER_CASE_STATE
def test_matrix_mock_conforms(case: Any, matrix_mock: MatrixMock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    matrix_mock.world.reset()
    _bound_long_poll(case)
    headers = _with_real_token(case, _admin_token(matrix_mock))
    journaled = matrix_mock.world.journal.last_seq
    response = case.call(base_url=matrix_mock.url, headers=headers)
    case.validate_response(response, excluded_checks=_excluded(case, response, matrix_mock, journaled))
    _no_mock_bug(matrix_mock)
    _no_mock_crash(caplog)


@pytest.mark.mock_lenient
@LETTA.parametrize()
@PER_CASE_STATE
def test_letta_mock_conforms(case: Any, letta_mock: LettaMock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    letta_mock.world.reset()
    journaled = letta_mock.world.journal.last_seq
    response = case.call(base_url=letta_mock.url, headers=_with_real_token(case, letta_mock.token))
    case.validate_response(response, excluded_checks=_excluded(case, response, letta_mock, journaled))
    _no_mock_bug(letta_mock)
    _no_mock_crash(caplog)


def _admin_token(mock: MatrixMock) -> str:
    return str(mock.world.matrix.login(user="admin", password="admin_password")["access_token"])


def _stateful(schema: Any, mock: MatrixMock | LettaMock) -> Any:
    """The schema's state machine on the mock: a fresh world per scenario, real tokens, our exclusions."""

    class OnTheMock(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            mock.world.reset()
            self.token = _admin_token(mock) if isinstance(mock, MatrixMock) else mock.token

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            _bound_long_poll(case)
            self.journaled = mock.world.journal.last_seq
            return {"base_url": mock.url, "headers": _with_real_token(case, self.token)}

        def validate_response(
            self, response: Any, case: Case[Any], additional_checks: Any = None, **kwargs: Any
        ) -> None:
            excluded = _excluded(case, response, mock, self.journaled)
            case.validate_response(response, excluded_checks=excluded, transport_kwargs=kwargs)

    return OnTheMock


# Scenarios: the profile's examples (ci: 8, fuzz: 200), each up to 10 calls.
STATEFUL = settings(stateful_step_count=10, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.mock_lenient
@pytest.mark.parametrize("service", ["matrix", "letta"])
def test_mock_conforms_statefully(
    service: str, matrix_mock: MatrixMock, letta_mock: LettaMock, caplog: pytest.LogCaptureFixture
) -> None:
    schema, mock = (MATRIX, matrix_mock) if service == "matrix" else (LETTA, letta_mock)
    _stateful(schema, mock).run(settings=STATEFUL)
    _no_mock_bug(mock)
    _no_mock_crash(caplog)
