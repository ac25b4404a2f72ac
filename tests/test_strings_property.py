"""For every operation of both specs: each string of a documented request (body values and keys, query and
path parameters) replaced in turn with arbitrary Unicode, lone surrogates included. The mock never answers
500, its answer passes its own contract check, and its journal and state stay readable JSON."""

from __future__ import annotations

import copy
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.validation import Operation, fill_template, validator_for
from mockgen.pytest_plugin import LettaMock, MatrixMock

# Each example is a few loopback requests; the `fuzz` profile (make fuzz) runs many more.
PER_TEST = settings(
    suppress_health_check=[*settings().suppress_health_check, HealthCheck.function_scoped_fixture]
)

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.lists(st.one_of(st.characters(exclude_categories=()), _SURROGATES), max_size=12).map("".join)

Slot = tuple[str, tuple[Any, ...]]  # ("body" | "body-key" | "query" | "path", where)


def _operations(service: str) -> list[Operation]:
    return list(validator_for(service).operations.values())


def _body_example(operation: Operation) -> Any:
    content = operation.definition.get("requestBody", {}).get("content", {}).get("application/json", {})
    examples = content.get("examples") or {}
    for example in examples.values():
        return copy.deepcopy(example.get("value"))
    return copy.deepcopy(content.get("example", {}))


def _string_slots(document: Any, where: tuple[Any, ...] = ()) -> Iterator[Slot]:
    if isinstance(document, str):
        yield "body", where
    elif isinstance(document, dict):
        for key, value in document.items():
            yield "body-key", (*where, key)
            yield from _string_slots(value, (*where, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _string_slots(value, (*where, index))


def _replace(document: Any, slot: Slot, text: str) -> Any:
    kind, where = slot
    if not where:
        return text
    parent = document
    for part in where[:-1]:
        parent = parent[part]
    if kind == "body-key":
        parent[text] = parent.pop(where[-1])
    else:
        parent[where[-1]] = text
    return document


def _send(method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()  # ensure_ascii: surrogates as escapes
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class _Crashes(logging.Handler):
    """What the exchange layer logs when a handler crashes. (The body cannot tell: a crash answers as the
    service's generic 500, which is also what real Letta 0.11.7 answers on purpose, e.g. to an `assistant`
    role, and which the mock then answers too.)"""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("mock handler failed"):
            self.seen.append(record.getMessage())


def _check(
    mock: MatrixMock | LettaMock, operation: Operation, status: int, raw: bytes, crashes: _Crashes
) -> None:
    assert crashes.seen == [], (operation.operation_id, status, crashes.seen)
    [entry] = mock.world.journal.entries(since=mock.world.journal.last_seq - 1)
    answer_breaks = [v for v in entry.violations if v.side == "response"]
    assert not answer_breaks, answer_breaks
    for view in ("journal", "state"):
        code, raw = _send("GET", f"{mock.url}/_mock/{view}", None, mock.control_headers)
        assert code == 200, view
        json.loads(raw.decode("utf-8"))


def _exercise(
    mock: MatrixMock | LettaMock,
    operation: Operation,
    values: dict[str, str],
    headers: dict[str, str],
    data: st.DataObject,
) -> None:
    body = _body_example(operation) if operation.body is not None else None
    params = {name: param for (location, name), param in operation.params.items() if location != "header"}
    slots: list[Slot] = [*_string_slots(body)] if body is not None else []
    slots += [(param.location, (name,)) for name, param in params.items()]
    if not slots:
        return
    slot = data.draw(st.sampled_from(slots), label="slot")
    text = data.draw(TEXT, label="text")
    if slot[0] in ("body", "body-key"):
        body = _replace(body, slot, text)
    path_values = {n: values.get(n, "x") for n, p in params.items() if p.location == "path"}
    query = {n: values.get(n, "1") for n, p in params.items() if p.location == "query" and p.required}
    if slot[0] == "path":
        path_values[slot[1][0]] = text
    elif slot[0] == "query":
        query[slot[1][0]] = text
    # `surrogatepass`: a lone surrogate goes out as the (invalid UTF-8) bytes ED A0 80.
    path = fill_template(
        operation.path, lambda name: quote(path_values[name], safe="", errors="surrogatepass")
    )
    query_string = urlencode(query, quote_via=lambda v, *_: quote(v, safe="", errors="surrogatepass"))
    url = f"{mock.url}{path}" + (f"?{query_string}" if query_string else "")
    crashes = _Crashes()
    logging.getLogger("mockgen").addHandler(crashes)
    try:
        status, raw = _send(operation.method, url, body, {"Content-Type": "application/json", **headers})
    finally:
        logging.getLogger("mockgen").removeHandler(crashes)
    _check(mock, operation, status, raw, crashes)


@pytest.mark.mock_lenient
@pytest.mark.parametrize("operation", _operations("matrix"), ids=lambda op: op.operation_id)
@PER_TEST
@given(data=st.data())
def test_matrix_operation_survives_any_string(
    operation: Operation, matrix_mock: MatrixMock, data: st.DataObject
) -> None:
    # A fresh world per example: one example may lock or rename the admin the next one logs in as.
    matrix_mock.world.reset()
    login = matrix_mock.world.matrix.login(user="admin", password="admin_password")
    admin = login["user_id"]
    room = matrix_mock.world.matrix.create_room(matrix_mock.world.matrix.users[admin], {})
    values = {
        "version": "v3",
        "userId": admin,
        "roomId": room,
        "roomIdOrAlias": room,
        "eventType": "m.room.topic",
    }
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    _exercise(matrix_mock, operation, values, headers, data)


@pytest.mark.mock_lenient
@pytest.mark.parametrize("operation", _operations("letta"), ids=lambda op: op.operation_id)
@PER_TEST
@given(data=st.data())
def test_letta_operation_survives_any_string(
    operation: Operation, letta_mock: LettaMock, data: st.DataObject
) -> None:
    letta_mock.world.reset()  # a fresh world per example, as the fixture gives each test
    agents = letta_mock.world.letta.list_agents()
    values = {"agent_id": str(agents[0]["id"]) if agents else letta_mock.add_agents(1)[0].id}
    _exercise(letta_mock, operation, values, letta_mock.headers, data)
