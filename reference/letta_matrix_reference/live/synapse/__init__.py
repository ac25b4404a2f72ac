"""A real Synapse homeserver on 127.0.0.1 (SQLite, no federation, no outbound traffic).

>>> with SynapseServer() as info:  # doctest: +SKIP
...     print(info.url, info.admin_user_id)

The server runs from its own cached venv (``live/synapse-requirements.txt``), configured for
tests: open registration with ``m.login.dummy``, every rate limit raised, ``bcrypt_rounds: 4``,
no federation (``federation_domain_whitelist: []``, ``trusted_key_servers: []``), no URL
previews, no stats. An admin is created at start through the shared-secret registration API.

CLI: ``python -m letta_matrix_reference.live.synapse install|start|stop|run|status`` (see ``--help``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import string
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from letta_matrix_reference.live import venv
from letta_matrix_reference.live.errors import LiveError, ServerStartError
from letta_matrix_reference.live.net import LOOPBACK, http_request, server_env
from letta_matrix_reference.live.server import ManagedServer
from letta_matrix_reference.live.state import new_secret, redact, write_private
from letta_matrix_reference.live.venv import ensure_venv, pinned_lines

log = logging.getLogger("letta_matrix_reference.live.synapse")

REQUIREMENTS_FILE = Path(__file__).parents[1] / "synapse-requirements.txt"
DEFAULT_SERVER_NAME = "matrix.test"
ADMIN_USERNAME = "admin"
SECRETS_FILE = "live-secrets.json"

#: Every client-side rate limiter Synapse has, raised so that tests never see a 429.
_UNLIMITED = {"per_second": 100000, "burst_count": 100000}
RATE_LIMITS: dict[str, object] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {"address": _UNLIMITED, "account": _UNLIMITED, "failed_attempts": _UNLIMITED},
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
}


class UserInUseError(LiveError):
    """The shared-secret registration found the user name taken."""


@dataclass(frozen=True)
class SynapseInfo:
    url: str
    server_name: str
    pid: int
    admin_user_id: str
    admin_password: str
    admin_token: str
    registration_shared_secret: str


def _requirements_text() -> str:
    return REQUIREMENTS_FILE.read_text()


def installed_python(cache_dir: Path | None = None) -> Path | None:
    """The cached venv's python if Synapse is already installed, else None (installs nothing)."""
    return venv.installed_python("synapse", _requirements_text(), cache_dir)


def ensure_installed(cache_dir: Path | None = None, *, timeout: float = 900.0) -> Path:
    """Install Synapse (pinned by ``synapse-requirements.txt``) into a cached venv; return its python.

    Idempotent and cheap when cached; concurrent callers wait on a lock file.
    """
    return ensure_venv(
        "synapse",
        pip_args=["-r", str(REQUIREMENTS_FILE)],
        key_material=_requirements_text(),
        cache_dir=cache_dir,
        prefetch=pinned_lines(_requirements_text()),
        check_cmd=["-c", "import synapse.app.homeserver, synapse.util; print(synapse.__version__)"],
        check_env=server_env(strip_prefixes=("SYNAPSE_",)),
        timeout=timeout,
    )


def signing_key_line() -> str:
    """A fresh ed25519 signing key in Synapse's key-file format (``ed25519 <version> <seed>``)."""
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    version = "a_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))
    return f"ed25519 {version} {seed}\n"


def build_config(
    *,
    workdir: Path,
    port: int,
    server_name: str,
    registration_shared_secret: str,
    macaroon_secret_key: str,
    form_secret: str,
) -> dict[str, Any]:
    """The homeserver config used for tests (a plain dict; written as JSON, which is YAML)."""
    return {
        "server_name": server_name,
        "public_baseurl": f"http://{LOOPBACK}:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": [LOOPBACK],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(workdir / "signing.key"),
        "registration_shared_secret": registration_shared_secret,
        "macaroon_secret_key": macaroon_secret_key,
        "form_secret": form_secret,
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "report_stats": False,
        "enable_metrics": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "url_preview_enabled": False,
        "bcrypt_rounds": 4,
        **RATE_LIMITS,
    }


def register_admin(
    url: str,
    shared_secret: str,
    username: str,
    password: str,
    *,
    admin: bool = True,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Register a user through ``/_synapse/admin/v1/register`` (nonce + HMAC-SHA1 of the shared secret).

    Returns Synapse's answer (``user_id``, ``access_token``, ``device_id``, ``home_server``).
    """
    endpoint = f"{url}/_synapse/admin/v1/register"
    status, body = http_request("GET", endpoint, timeout=timeout)
    if status != 200 or not isinstance(body, dict) or "nonce" not in body:
        raise LiveError(f"GET {endpoint} answered {status}: {body!r}")
    nonce = str(body["nonce"])
    message = b"\x00".join(p.encode() for p in (nonce, username, password, "admin" if admin else "notadmin"))
    mac = hmac.new(shared_secret.encode(), message, digestmod=hashlib.sha1)
    request = {
        "nonce": nonce,
        "username": username,
        "password": password,
        "admin": admin,
        "mac": mac.hexdigest(),
    }
    status, body = http_request("POST", endpoint, body=request, timeout=timeout)
    if status == 400 and isinstance(body, dict) and body.get("errcode") == "M_USER_IN_USE":
        raise UserInUseError(f"{username!r} is already registered")
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise LiveError(f"POST {endpoint} for {username!r} answered {status}: {body!r}")
    return body


def login(url: str, username: str, password: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """``POST /_matrix/client/v3/login`` with a password; returns Synapse's answer."""
    endpoint = f"{url}/_matrix/client/v3/login"
    request = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": username},
        "password": password,
    }
    status, body = http_request("POST", endpoint, body=request, timeout=timeout)
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise LiveError(f"POST {endpoint} for {username!r} answered {status}: {body!r}")
    return body


class SynapseServer(ManagedServer[SynapseInfo]):
    """One Synapse process. ``start()``/``stop()``, or use it as a (sync or async) context manager."""

    kind: ClassVar[str] = "synapse"
    ready_path: ClassVar[str] = "/_matrix/client/versions"
    default_start_timeout: ClassVar[float] = 60.0

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int = 0,
        server_name: str = DEFAULT_SERVER_NAME,
        cache_dir: Path | None = None,
        admin_username: str = ADMIN_USERNAME,
        admin_password: str | None = None,
        registration_shared_secret: str | None = None,
        detach: bool = False,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, port=port, cache_dir=cache_dir, detach=detach, keep_workdir=keep_workdir)
        self.server_name = server_name
        self._admin_username = admin_username
        self._given_admin_password = admin_password
        self._given_shared_secret = registration_shared_secret
        self._admin_password = admin_password or new_secret(18)
        self._shared_secret = registration_shared_secret or new_secret(32)
        self._macaroon_secret_key = new_secret(32)
        self._form_secret = new_secret(32)

    def _load_or_save_secrets(self, workdir: Path) -> None:
        """A workdir that is reused keeps its database, so it keeps its secrets and admin too."""
        path = workdir / SECRETS_FILE
        saved: dict[str, Any] = {}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("server_name") != self.server_name:
                raise LiveError(
                    f"{workdir} holds a homeserver for {saved.get('server_name')!r}, not {self.server_name!r}"
                )
            self._admin_password = self._given_admin_password or str(saved["admin_password"])
            self._shared_secret = self._given_shared_secret or str(saved["registration_shared_secret"])
            self._macaroon_secret_key = str(saved["macaroon_secret_key"])
            self._form_secret = str(saved["form_secret"])
        secrets_json = {
            "server_name": self.server_name,
            "admin_password": self._admin_password,
            "registration_shared_secret": self._shared_secret,
            "macaroon_secret_key": self._macaroon_secret_key,
            "form_secret": self._form_secret,
        }
        if secrets_json != saved:
            write_private(path, json.dumps(secrets_json, indent=2))

    def start(self, timeout: float | None = 60.0) -> SynapseInfo:
        """Install if needed, start, wait for ``/_matrix/client/versions``, create the admin."""
        return super().start(timeout)

    def _install(self) -> Path:
        return ensure_installed(self._cache_dir)

    def _prepare(self, python: Path, workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
        (workdir / "media_store").mkdir(parents=True, exist_ok=True)
        self._load_or_save_secrets(workdir)
        key_path = workdir / "signing.key"
        if not key_path.exists():
            write_private(key_path, signing_key_line())
        config = build_config(
            workdir=workdir,
            port=port,
            server_name=self.server_name,
            registration_shared_secret=self._shared_secret,
            macaroon_secret_key=self._macaroon_secret_key,
            form_secret=self._form_secret,
        )
        config_path = workdir / "homeserver.yaml"
        write_private(config_path, json.dumps(config, indent=2) + "\n")  # JSON is valid YAML
        cmd = [str(python), "-m", "synapse.app.homeserver", "--config-path", str(config_path)]
        env = server_env(strip_prefixes=("SYNAPSE_",))
        return cmd, env

    def _on_ready(self, url: str, pid: int, deadline: float) -> SynapseInfo:
        remaining = max(1.0, deadline - time.monotonic())
        try:
            try:
                body = register_admin(
                    url, self._shared_secret, self._admin_username, self._admin_password, timeout=remaining
                )
                action = "created"
            except UserInUseError:  # a reused workdir: the admin exists already
                body = login(url, self._admin_username, self._admin_password, timeout=remaining)
                action = "logged in"
        except (LiveError, OSError) as exc:
            raise ServerStartError(f"synapse is up but getting an admin token failed: {exc}") from exc
        token = str(body["access_token"])
        log.info(
            "synapse admin %s %s (token %s, shared secret %s)",
            body.get("user_id"),
            action,
            redact(token),
            redact(self._shared_secret),
        )
        return SynapseInfo(
            url=url,
            server_name=self.server_name,
            pid=pid,
            admin_user_id=str(body["user_id"]),
            admin_password=self._admin_password,
            admin_token=token,
            registration_shared_secret=self._shared_secret,
        )

    def _secrets(self) -> list[str]:
        return [self._shared_secret, self._admin_password]

    def _state(self, info: SynapseInfo) -> dict[str, object]:
        return {"info": asdict(info)}
