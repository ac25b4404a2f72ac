"""The scenario corpus as data: the shipped files load, templates and tags build the steps they say, and a
malformed file is refused with the file, the step and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.harness.corpus import SERVICES, CorpusError, load_corpus, parse_corpus, read_corpus
from contracts.harness.scenario import Step


@pytest.mark.parametrize("service", SERVICES)
def test_the_shipped_corpus_loads(service: str) -> None:
    steps = load_corpus(service)
    assert len(steps) >= 20
    assert {step.service for step in steps} == {service}
    assert all(step.expect is not None for step in steps)


def test_only_a_known_service_has_a_corpus() -> None:
    with pytest.raises(ValueError, match="no corpus for 'irc'; there is one for matrix, letta"):
        load_corpus("irc")


def test_a_template_is_merged_under_the_step_and_tags_build_values() -> None:
    text = """
service: matrix
templates:
  login: {method: POST, path: /login, body: {type: password, user: a}, params: {p: "1"}, expect: 200}
steps:
  - {name: plain, method: GET, path: /x, raw: "{", needs: [admin_token], follow_redirects: false, expect: 400}
  - {name: login, uses: login, body: {password: pw, user: b}, save: {token: access_token}}
  - {name: again, uses: login, path: /r0/login, body: {x: !nested 3, y: !repeat [ab, 2]}, expect: 403}
"""
    plain, login, again = parse_corpus(text, "t.yaml")
    assert plain == Step(
        "plain", "matrix", "GET", "/x", raw=b"{", needs=("admin_token",), follow_redirects=False, expect=400
    )
    assert login == Step(
        "login",
        "matrix",
        "POST",
        "/login",
        body={"type": "password", "user": "b", "password": "pw"},
        params={"p": "1"},
        save={"token": "access_token"},
        expect=200,
    )
    assert (again.path, again.expect) == ("/r0/login", 403)
    assert again.body == {"type": "password", "user": "a", "x": [[[]]], "y": "abab"}


MALFORMED = """\
service: matrix
templates:
  login: {method: POST, path: /login}
steps:
  - {name: versions, method: GET, path: /versions, expect: 200}
  - {name: whoami, method: GET, path: /whoami, bdy: {}, expect: "200"}
  - {name: list, method: GET, path: /list, params: {limit: 1}}
"""


def test_a_malformed_corpus_file_is_refused_naming_file_step_and_fault(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(MALFORMED, encoding="utf-8")
    with pytest.raises(CorpusError) as refused:
        read_corpus(path)
    assert str(refused.value).splitlines() == [
        "broken.yaml: step 2 'whoami': Unevaluated properties are not allowed ('bdy' was unexpected)",
        "broken.yaml: step 2 'whoami' at expect: '200' is not of type 'integer'",
        "broken.yaml: step 3 'list': 'expect' is a required property",
        "broken.yaml: step 3 'list' at params/limit: 1 is not of type 'string'",
    ]


A = "{name: a, uses: login, expect: 200"  # a step that is fine until a case adds to it
UNREADABLE = "not YAML the corpus can read:"


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ("[{name: a, uses: logon}]", "step 1 'a': uses the unknown template 'logon' (known: login)"),
        ("[{name: a, uses: login}]", "step 1 'a': has no 'expect', nor has its template"),
        (f"[{A}, body: {{}}, raw: x}}]", "step 1 'a': has both a body and a raw body"),
        (f"[{A}, body: {{d: 2024-01-01}}}}]", "step 1 'a': has a body that is not JSON"),
        (f"[{A}, body: null}}]", "step 1 'a' at body: a body of null; leave `body` out to send none"),
        (f"[{A}}}, {A}}}]", "step 2 'a': the name is taken by an earlier step"),
        (f"[{A}, name: b}}]", f"{UNREADABLE} duplicate key 'name'"),
        (f"[{A}, body: !nested 0}}]", f"{UNREADABLE} !nested takes a depth of 1 or more"),
        (f"[{A}, body: !repeat [x]}}]", f"{UNREADABLE} !repeat takes [text, count]"),
        ("[]", "the file at steps: [] should be non-empty"),
    ],
)
def test_what_the_loader_refuses(steps: str, problem: str) -> None:
    text = f"service: matrix\ntemplates: {{login: {{method: POST, path: /login}}}}\nsteps: {steps}\n"
    with pytest.raises(CorpusError) as refused:
        parse_corpus(text, "b.yaml")
    assert str(refused.value).startswith(f"b.yaml: {problem}")
