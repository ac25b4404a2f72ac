"""The fixtures' configuration: ini text read by each field's type, the marker's keys, routes and seeds."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Literal

import pytest

from mockgen.fixture_config import OWNED, ROUTES, parse_ini, resolve, settable
from mockgen.world import MockConfig


def test_every_mockconfig_field_but_the_fixtures_own_is_a_setting() -> None:
    """A field added to MockConfig is an ini option and a marker key without another line."""
    fields = {field.name for field in dataclasses.fields(MockConfig)}
    assert set(settable()) == (fields - OWNED) | {ROUTES}


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("server_name", " example.org ", "example.org"),
        ("agents", "3", 3),
        ("header_timeout", "2.5", 2.5),
        ("validate", "no", False),
        ("registration_enabled", "True", True),
        ("letta_token", "none", None),
        ("max_connections", "none", None),
        ("random_seed", "7", 7),
    ],
)
def test_ini_text_is_read_by_the_fields_type(name: str, text: str, value: object) -> None:
    assert parse_ini(name, text, Path()) == value


@pytest.mark.parametrize(
    ("name", "text", "complaint"),
    [
        ("agents", "many", "mockgen_agents = 'many': not a int"),
        ("validate", "maybe", "mockgen_validate = 'maybe': not a bool"),
        (ROUTES, ["http://a:1 letta"], "mockgen_routes: 'http://a:1 letta' is not `BASE_URL = service`"),
    ],
)
def test_ini_text_that_does_not_read_names_the_option(
    name: str, text: str | list[str], complaint: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_ini(name, text, Path())


def test_routes_and_a_seed_file_resolve(tmp_path: Path) -> None:
    (tmp_path / "seed.json").write_text(json.dumps({"agents": [{"name": "Ada"}]}), encoding="utf-8")
    routes = parse_ini(
        ROUTES, ["http://192.168.50.90:8289 = letta", "", "http://test-synapse:8008=matrix"], tmp_path
    )
    resolved = resolve({"routes": routes, "seed": "seed.json", "letta_token": ""}, tmp_path)
    assert resolved.routes == (("http://192.168.50.90:8289", "letta"), ("http://test-synapse:8008", "matrix"))
    assert resolved.config.seed == {"agents": [{"name": "Ada"}]}
    assert resolved.config.letta_token is None  # an empty password: an open Letta
    # What the running servers are compared on leaves out what the fixtures set themselves.
    again = dataclasses.replace(resolved.config, control_token="x", matrix_public_url="http://127.0.0.1:1/")
    assert dataclasses.replace(resolved, config=again).server_key() == resolved.server_key()


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"sever_name": "x"}, "unknown setting"),
        ({"routes": {"http://a:1": "synapse"}}, "a route leads to one of"),
        ({"routes": {"http://a:1/api": "matrix"}}, "a scheme, host and port only"),
        ({"routes": ["http://a:1"]}, "routes is a mapping"),
    ],
)
def test_a_bad_setting_is_refused_by_name(values: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        resolve(values, Path())


def test_a_literal_field_reads_from_an_ini_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a `letta_version: Literal["0.11.7", "0.16.8"]` field would."""
    from mockgen import fixture_config

    hints = {**fixture_config.settable(), "letta_version": Literal["0.11.7", "0.16.8"]}
    monkeypatch.setattr(fixture_config, "settable", lambda: hints)
    assert parse_ini("letta_version", "0.16.8", Path()) == "0.16.8"
    with pytest.raises(ValueError, match=r"mockgen_letta_version = '0\.12': not one of 0\.11\.7, 0\.16\.8"):
        parse_ini("letta_version", "0.12", Path())
