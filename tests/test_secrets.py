"""Secrets never kept whole: tokens in query strings, passwords of any JSON type, bodies that are not JSON,
in the journal, in violations and in recordings; and a property test over random bodies."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.exchanges import Exchange
from contracts.redaction import (
    CUT,
    MASK,
    TOKEN_PREFIX,
    TOO_DEEP,
    is_secret_name,
    mask_token,
    redact,
    redact_bytes,
    redact_headers,
    redact_query,
    redact_text,
)
from contracts.validation import Operation, Violation, validator_for
from mockgen.journal import Journal
from mockgen.pytest_plugin import MatrixMock
from tests.support import call, login

PASSWORDS: list[Any] = [["hunter2-in-a-list"], 8675309123, {"nested": "hunter2-in-an-object"}, 3.14159265]
LEAKED = ("hunter2", "8675309123", "3.14159265")
# Decodable, but past the interpreter's frames for a walk in Python (two frames a level).
DEEPER_THAN_THE_WALK = 900


def _type_name(value: Any) -> str:
    return {list: "array", int: "integer", dict: "object", float: "number"}[type(value)]


def _text_of(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def _journal_text(http: aiohttp.ClientSession, mock: MatrixMock) -> str:
    """The journal as the control API serves it."""
    page = await call(http, "GET", f"{mock.url}/_mock/journal", headers=mock.control_headers)
    assert page.status == 200
    return _text_of(page.body)


# -- names and the one function per place


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("new_password", True),
        ("access_token", True),
        ("refresh_token", True),
        ("token", True),
        ("login_token", True),
        ("api_key", True),
        ("client_secret", True),
        ("Authorization", True),
        ("X-Bare-Password", True),
        ("X-Mock-Control-Token", True),
        ("Set-Cookie", True),
        ("accessToken", True),
        ("refreshToken", True),
        ("apiKey", True),
        ("maxTokens", False),
        ("max_tokens", False),
        ("token_type", False),
        ("user", False),
        ("session", False),
    ],
)
def test_which_names_are_secret(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_masks_by_place() -> None:
    long_token = "syt_" + "a" * 40
    assert mask_token(long_token) == long_token[:TOKEN_PREFIX] + "…"
    assert mask_token("short-but-secret") == "…"  # a prefix would give most of it away
    assert redact({"auth": {"password": ["x"], "token": long_token, "user": "u"}}) == {
        "auth": {"password": MASK, "token": long_token[:TOKEN_PREFIX] + "…", "user": "u"}
    }
    assert redact_query("limit=5&access_token=s3cret;Refresh%5FToken=s3cret&flag") == (
        "limit=5&access_token=%E2%80%A6;Refresh%5FToken=%E2%80%A6&flag"
    )
    assert redact_headers(
        {
            "Authorization": f"Bearer {long_token}",
            "Cookie": "a=b; c=d",
            "X-Bare-Password": "password p",
            "A": "1",
        }
    ) == {
        "Authorization": f"Bearer {long_token[:TOKEN_PREFIX]}…",
        "Cookie": MASK,
        "X-Bare-Password": MASK,
        "A": "1",
    }
    assert redact_text('{"user": "a", "password": "hunter2",}') == '{"user": "a", "password' + CUT
    assert redact_text("m.login.token") == "m.login.token"  # nothing after the word to hide
    assert redact_bytes(b'\xff{"password": "hunter2"') == b'\xff{"password' + CUT.encode()


def test_a_value_too_deep_to_look_through_is_not_quoted() -> None:
    validator = validator_for("matrix")
    body = ("[" * DEEPER_THAN_THE_WALK + "]" * DEEPER_THAN_THE_WALK).encode()
    check = validator.check_request(
        validator.operations["login"],
        path_params={"version": "v3"},
        body=body,
        content_type="application/json",
    )
    assert [(v.actual, v.value) for v in check.violations] == [(f"array {_text_of(TOO_DEEP)}", TOO_DEEP)]


def test_a_recording_masks_the_query_and_a_body_that_is_not_json() -> None:
    recorded = Exchange(
        method="POST",
        url="http://h/_matrix/client/v3/login?access_token=s3cret-token",
        request_body=b'{"type": "m.login.password", "password": "hunter2",}',
        status=400,
    ).to_json()
    assert "s3cret" not in _text_of(recorded)
    assert "hunter2" not in _text_of(recorded)


# -- the journal and violations, over HTTP


async def test_a_query_token_never_reaches_the_journal_whole(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock
) -> None:
    token = await login(http, matrix_mock.url, "admin", "admin_password")
    url = f"{matrix_mock.url}/_matrix/client/v3/account/whoami"
    answer = await call(http, "GET", url, params={"access_token": token, "next_token": "s3cret-paging"})
    assert answer.status == 200
    [entry] = matrix_mock.journal("getTokenOwner")
    assert entry.query == f"access_token={token[:TOKEN_PREFIX]}%E2%80%A6&next_token=%E2%80%A6"
    journal = await _journal_text(http, matrix_mock)
    assert token not in journal
    assert "s3cret-paging" not in journal


@pytest.mark.mock_lenient
@pytest.mark.parametrize("password", PASSWORDS, ids=["array", "integer", "object", "number"])
async def test_a_password_of_any_type_is_masked_in_the_journal_and_violations(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, password: Any
) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "admin", "token": password},
        "password": password,
    }
    answer = await call(http, "POST", f"{matrix_mock.url}/_matrix/client/v3/login", json_body=body)
    assert answer.status == 400
    [entry] = matrix_mock.journal("login")
    assert entry.request_body["password"] == MASK
    assert entry.request_body["identifier"]["token"] == MASK
    assert [v.actual for v in entry.violations if v.pointer == "/password"] == [
        f"{_type_name(password)} (redacted)"
    ]
    shown = _text_of([v.message for v in entry.violations]) + _text_of(answer.body)
    journal = await _journal_text(http, matrix_mock)
    assert not [leak for leak in LEAKED if leak in shown or leak in journal]


@pytest.mark.mock_lenient
@pytest.mark.parametrize(
    "body",
    [
        '{"type": "m.login.password", "user": "admin", "password": "hunter2",}',  # a trailing comma
        json.dumps(json.dumps({"type": "m.login.password", "user": "admin", "password": "hunter2"})),  # twice
        json.dumps([{"type": "m.login.password", "user": "admin", "password": "hunter2"}]),  # in an array
    ],
    ids=["malformed", "encoded-twice", "array"],
)
async def test_a_body_that_fails_its_check_does_not_leak_its_password(
    http: aiohttp.ClientSession, matrix_mock: MatrixMock, body: str
) -> None:
    answer = await call(
        http,
        "POST",
        f"{matrix_mock.url}/_matrix/client/v3/login",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 400
    [entry] = matrix_mock.journal("login")
    assert entry.violations
    assert "hunter2" not in _text_of([(v.actual, v.message) for v in entry.violations])
    assert "hunter2" not in await _journal_text(http, matrix_mock)


# -- the property: random bodies, secrets at random depths, of random JSON types

SECRET_KEYS = st.sampled_from(
    ["password", "new_password", "access_token", "refresh_token", "token", "login_token", "api_key", "secret"]
)
FILLER_KEYS = st.sampled_from(["type", "user", "auth", "identifier", "name", "initial_state", "content", "x"])
# Secret leaves whose text cannot turn up anywhere by chance: long marked strings (some long enough for a
# token to keep its prefix), and numbers far from any the mock writes.
MARKED = st.builds(lambda n, pad: f"s3cr3t{n:09d}{'z' * pad}", st.integers(0, 10**9), st.integers(0, 30))
BIG_INTEGERS = st.integers(10**12, 10**15)
BIG_NUMBERS = st.floats(min_value=1e9, max_value=1e12).map(lambda x: x + 0.5)
SECRET_LEAVES = st.one_of(MARKED, BIG_INTEGERS, BIG_NUMBERS)
SECRET_VALUES = st.one_of(
    st.booleans(),
    st.none(),
    st.recursive(
        SECRET_LEAVES,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3),
            st.dictionaries(st.sampled_from(["value", "user", "x"]), inner, min_size=1, max_size=3),
        ),
        max_leaves=4,
    ),
)
FILLER = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("ab .", max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(FILLER_KEYS, inner, max_size=2)),
    max_leaves=6,
)
# A step outward from a planted secret: into a list, or under a key.
INTO_A_LIST = "[]"
WRAPPERS = st.lists(st.one_of(st.just(INTO_A_LIST), FILLER_KEYS), max_size=4)
# What is searched for: the part of a marked string no mask keeps (a token keeps TOKEN_PREFIX characters).
MARK_LENGTH = 15
# In-process and cheap (about 20 ms an example): more than the `ci` profile's few.
PROPERTY_EXAMPLES = 50
OPERATIONS = [
    ("matrix", "login"),
    ("matrix", "register"),
    ("matrix", "createRoom"),
    ("matrix", "setDisplayName"),
    ("letta", "createAgent"),
    ("control", "controlSeed"),
]


@st.composite
def bodies_with_secrets(draw: st.DrawFn) -> tuple[Any, list[str], dict[str, str]]:
    """(a JSON body, the texts of the secret leaves planted in it, a query of secret parameters)."""
    body: dict[str, Any] = draw(st.dictionaries(FILLER_KEYS, FILLER, max_size=3))
    planted: list[Any] = []
    for slot, (key, value, wrappers) in enumerate(
        draw(st.lists(st.tuples(SECRET_KEYS, SECRET_VALUES, WRAPPERS), min_size=1, max_size=3))
    ):
        node: Any = {key: value}
        for wrapper in wrappers:
            node = [node] if wrapper == INTO_A_LIST else {wrapper: node}
        if isinstance(node, dict) and not wrappers:
            body.update(node)  # at the top
        else:
            body[f"slot{slot}"] = node
        planted.append(value)
    query = {draw(SECRET_KEYS): draw(MARKED)}
    texts = [_searched(leaf) for leaf in [*_leaves(planted), *query.values()] if _distinct(leaf)]
    document: Any = [body] if draw(st.booleans()) else body
    return document, texts, query


def _distinct(leaf: Any) -> bool:
    """Whether a leaf's text is its own (not `true`, `null`, which any journal holds)."""
    return not isinstance(leaf, bool) and leaf is not None


def _searched(leaf: Any) -> str:
    return leaf[:MARK_LENGTH] if isinstance(leaf, str) else _text_of(leaf)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _path_params(operation: Operation) -> dict[str, str]:
    return {name: str(param.example) for (where, name), param in operation.params.items() if where == "path"}


@settings(max_examples=max(settings().max_examples, PROPERTY_EXAMPLES))
@given(found=bodies_with_secrets(), chosen=st.sampled_from(OPERATIONS))
def test_no_secret_reaches_the_journal_or_a_violation(
    found: tuple[Any, list[str], dict[str, str]], chosen: tuple[str, str]
) -> None:
    document, texts, query = found
    validator = validator_for(chosen[0])
    operation = validator.operations[chosen[1]]
    raw = json.dumps(document).encode()
    check = validator.check_request(
        operation, path_params=_path_params(operation), body=raw, content_type="application/json"
    )
    answered, _ = validator.check_response(
        operation, status=200, headers={"content-type": "application/json"}, body=raw
    )
    violations: list[Violation] = [*check.violations, *answered]
    journal = Journal()
    journal.record(
        time=0.0, service="matrix", operation=operation.operation_id, method=operation.method, path="/",
        query="&".join(f"{name}={value}" for name, value in query.items()), user=None, request_raw=raw,
        status=200, response_raw=raw, duration_ms=0.0, fault=None, variant=None, violations=violations,
    )  # fmt: skip
    [entry] = journal.entries()
    shown = _text_of(entry.to_json()) + _text_of(
        [(v.actual, v.message, v.value) for v in violations]  # `value` too, before the journal drops it
    )
    assert [text for text in texts if text in shown] == []
