"""The bridge's settings. Nothing here has a default host, token, password or server name: those always
come from the command line or the environment, so no deployment's secrets end up in the code."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from letta_matrix_reference.bridge.errors import ConfigurationError


@dataclass(frozen=True)
class Setting:
    """A required setting: the config field, its command-line flag and its environment variable."""

    name: str
    flag: str
    env: str


REQUIRED: tuple[Setting, ...] = (
    Setting("letta_url", "--letta", "LETTA_URL"),
    Setting("letta_token", "--letta-token", "LETTA_TOKEN"),
    Setting("matrix_url", "--matrix", "MATRIX_URL"),
    Setting("server_name", "--server-name", "MATRIX_SERVER_NAME"),
    Setting("admin_user", "--admin-user", "MATRIX_ADMIN_USER"),
    Setting("admin_password", "--admin-password", "MATRIX_ADMIN_PASSWORD"),
    Setting("bot_user", "--bot-user", "MATRIX_BOT_USER"),
    Setting("bot_password", "--bot-password", "MATRIX_BOT_PASSWORD"),
    Setting("data_dir", "--data-dir", "BRIDGE_DATA_DIR"),
)


@dataclass(frozen=True)
class BridgeConfig:
    """Everything one bridge needs. Secrets are left out of `repr`, so logging a config is safe."""

    letta_url: str
    letta_token: str = field(repr=False)
    matrix_url: str
    server_name: str
    admin_user: str
    admin_password: str = field(repr=False)
    bot_user: str
    bot_password: str = field(repr=False)
    data_dir: Path
    space_name: str = "Letta Agents"
    request_timeout: float = 30.0  # seconds, for one HTTP request from first byte out to last byte in
    max_attempts: int = 5  # per request, the first one included
    # Seconds the first retry waits at most (at least half of it: jitter); doubles with every further one.
    backoff_base: float = 0.5
    # Seconds: no wait is longer, whatever a server's Retry-After says (nor a pause while looking for
    # what a lost request made).
    backoff_cap: float = 30.0
    page_limit: int = 50  # agents asked for per Letta page
    max_pages: int = 1000  # stop paging here (and do not mark any agent removed: the list is incomplete)
    concurrency: int = 8  # agents processed at once
    poll_interval: float = 60.0  # seconds between syncs with --interval

    def __post_init__(self) -> None:
        for setting in REQUIRED:
            value = getattr(self, setting.name)
            if not str(value).strip():
                raise ConfigurationError(f"{setting.flag} / {setting.env} must not be empty")
        for name in ("letta_url", "matrix_url"):
            # Paths are appended to these, so one spelling: no trailing slash.
            object.__setattr__(self, name, _base_url(name, str(getattr(self, name))))
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        for name in ("max_attempts", "page_limit", "max_pages", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigurationError(f"{name} must be a whole number, got {value!r}")
            if value <= 0:
                raise ConfigurationError(f"{name} must be positive, got {value!r}")
        for name in ("request_timeout", "poll_interval", "backoff_cap"):
            # NaN would compare false with everything (a NaN timeout is no timeout), inf never ends a wait.
            if _number(name, getattr(self, name)) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)!r}")
        if _number("backoff_base", self.backoff_base) < 0 or self.backoff_cap < self.backoff_base:
            raise ConfigurationError("backoff_base must be >= 0 and backoff_cap >= backoff_base")
        if not self.space_name.strip():
            raise ConfigurationError("space_name must not be empty")

    @classmethod
    def from_sources(
        cls, values: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> BridgeConfig:
        """A config from explicit `values` (e.g. parsed command-line options, keyed by field name; None
        means "not given"), falling back to the environment for the required settings. Every missing
        setting is named in one error, with both ways to give it."""
        values = dict(values or {})
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = {name: value for name, value in values.items() if value is not None}
        missing = []
        for setting in REQUIRED:
            if settings.get(setting.name) in (None, ""):
                from_env = env.get(setting.env, "")
                if from_env:
                    settings[setting.name] = from_env
                else:
                    missing.append(f"{setting.flag} (or {setting.env})")
        if missing:
            raise ConfigurationError("missing required settings: " + ", ".join(missing))
        return cls(**settings)


def _number(name: str, value: Any) -> float:
    """`value` as a finite number, or a `ConfigurationError` naming the setting."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _base_url(name: str, url: str) -> str:
    """`url` without its trailing slash, if it is an http(s) URL with a host and a valid port, and nothing
    the bridge would lose or mangle by appending paths (a query, a fragment)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a valid URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        # Never echoed: it holds a password. Both services take a bearer token instead, which aiohttp
        # refuses to combine with credentials in the URL.
        raise ConfigurationError(f"{name} must not contain a user name or password (user:password@)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name} must be an http:// or https:// URL with a host, got {url!r}")
    if port == 0:
        raise ConfigurationError(f"{name} must have a port from 1 to 65535, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{name} must not have a query or fragment, got {url!r}")
    return url.rstrip("/")
