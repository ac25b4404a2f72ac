"""The bridge's settings. Nothing here has a default host, token, password or server name: those always
come from the command line or the environment, so no deployment's secrets end up in the code."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bridge.errors import ConfigurationError


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
    backoff_base: float = 0.5  # seconds before the first retry; doubles with every further one
    backoff_cap: float = 30.0  # seconds: no wait is longer, whatever a server's Retry-After says
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
            url = str(getattr(self, name))
            if not url.startswith(("http://", "https://")):
                raise ConfigurationError(f"{name} must be an http:// or https:// URL, got {url!r}")
            # Paths are appended to these, so one spelling: no trailing slash.
            object.__setattr__(self, name, url.rstrip("/"))
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        for name in (
            "request_timeout",
            "max_attempts",
            "page_limit",
            "max_pages",
            "concurrency",
            "poll_interval",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.backoff_base < 0 or self.backoff_cap < self.backoff_base:
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
