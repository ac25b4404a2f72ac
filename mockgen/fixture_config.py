"""What configures the pytest fixtures: ini options (`mockgen_<name>`) for a project, the
`@pytest.mark.mock_config(name=value, ...)` marker for a test (closest marker wins, key by key).

Every name is a `MockConfig` field (but the two the fixtures own: the control token and the public URL),
plus `routes`: so a field added to `MockConfig` is an ini option and a marker key with nothing else to
write. Its ini text is read by its type (str, a Literal of strings, int, float, bool; `none` for None where
the field takes it, e.g. `mockgen_letta_token = none` for an open Letta). Two keys read more: `seed` is a
mapping or a seed file (an ini path is relative to the rootdir), and `routes` maps base URLs to a service
(`{"http://192.168.50.90:8289": "letta"}`; in an ini, one `BASE = service` a line)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mockgen.reroute import origin_of
from mockgen.world import MockConfig, load_seed_file

MARKER = "mock_config"
INI_PREFIX = "mockgen_"
ROUTES = "routes"
SERVICES = ("letta", "matrix")
# Set by the fixtures themselves, per session.
OWNED = frozenset({"control_token", "matrix_public_url"})


def settable() -> dict[str, Any]:
    """Each configurable name and its type (`routes` is a mapping of base URL to service)."""
    hints = typing.get_type_hints(MockConfig)
    names = {f.name: hints[f.name] for f in dataclasses.fields(MockConfig) if f.name not in OWNED}
    return {**names, ROUTES: dict[str, str]}


@dataclass(frozen=True)
class FixtureConfig:
    """The mocks' configuration for one test and where its hard-coded base URLs go."""

    config: MockConfig
    routes: tuple[tuple[str, str], ...] = ()  # (base URL, service)

    def server_key(self) -> MockConfig:
        """What the running servers must have been started with to serve this test."""
        return dataclasses.replace(self.config, control_token=None, matrix_public_url=None)


def _optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def parse_ini(name: str, text: str | list[str], rootdir: Path) -> Any:
    """An ini option's text as the value of `name` (ValueError naming the option when it does not read)."""
    option = INI_PREFIX + name
    if name == ROUTES:
        lines = text if isinstance(text, list) else text.splitlines()
        routes: dict[str, str] = {}
        for line in filter(None, (raw.strip() for raw in lines)):
            base, equals, service = line.rpartition("=")
            if not equals:
                raise ValueError(f"{option}: {line!r} is not `BASE_URL = service`")
            routes[base.strip()] = service.strip()
        return routes
    assert isinstance(text, str)
    if name == "seed":
        return load_seed_file(rootdir / text.strip())
    base, optional = _optional(settable()[name])
    text = text.strip()
    if optional and text.lower() in ("", "none"):  # pytest reads an empty ini value as unset
        return None
    if typing.get_origin(base) is typing.Literal:
        choices = typing.get_args(base)
        if text not in choices:
            raise ValueError(f"{option} = {text!r}: not one of {', '.join(map(str, choices))}")
        return text
    readers: dict[Any, Callable[[str], Any]] = {str: str, int: int, float: float, bool: _boolean}
    if base not in readers:
        raise ValueError(f"{option}: set it with the marker, not in an ini file")
    try:
        return readers[base](text)
    except ValueError:
        raise ValueError(f"{option} = {text!r}: not a {base.__name__}") from None


def _boolean(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


def resolve(values: Mapping[str, Any], base_dir: Path) -> FixtureConfig:
    """The configuration for these values (ini and marker merged); ValueError naming a bad key or value."""
    names = settable()
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(
            f"{MARKER}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    fields = dict(values)
    routes = fields.pop(ROUTES, None) or {}
    if not isinstance(routes, Mapping):
        raise ValueError(f"{MARKER}: routes is a mapping of base URL to one of {', '.join(SERVICES)}")
    for base, service in routes.items():
        origin_of(str(base))
        if service not in SERVICES:
            raise ValueError(f"{MARKER}: route {base!r} -> {service!r}: a route leads to one of {SERVICES}")
    seed = fields.get("seed")
    if isinstance(seed, str | Path):
        fields["seed"] = load_seed_file(base_dir / seed)
    if fields.get("letta_token") == "":
        fields["letta_token"] = None  # an empty password is no password: an open Letta
    return FixtureConfig(MockConfig(**fields), tuple((str(b), str(s)) for b, s in routes.items()))
