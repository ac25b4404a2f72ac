"""A real Letta 0.11.7 server on 127.0.0.1 (SQLite, bearer-password auth, kept offline).

>>> with LettaServer() as info:  # doctest: +SKIP
...     agent = asyncio.run(create_agent(info, "agent-one"))

0.11.7 is the last Letta release that runs on SQLite. It is installed into its own cached venv
as ``letta[server,sqlite]==0.11.7`` constrained by ``live/letta-constraints.txt`` (unpinned
installs do not resolve or do not import). The server is started with ``HOME`` pointing at a
scratch directory (its database is ``$HOME/.letta/sqlite.db``), ``LETTA_SERVER_SECURE=true`` and
a password, tracing/telemetry/version checks off, no provider API keys, and every HTTP(S) proxy
variable pointing at a dead loopback port (``NO_PROXY`` covers loopback) so nothing can leave
the machine. Agents made with the ``letta/letta-free`` model and embedding handles need no
network at creation time; sending them a message does (and so fails here). Agents made with
``create_agent(..., llm_url=FakeLLM().url)`` talk to ``live.fakellm`` on loopback instead, and answer.

CLI: ``python -m letta_matrix_reference.live.letta install|start|stop|run|status`` (see ``--help``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

from letta_matrix_reference.live import venv
from letta_matrix_reference.live.errors import LiveError
from letta_matrix_reference.live.net import LOOPBACK, server_env
from letta_matrix_reference.live.server import ManagedServer
from letta_matrix_reference.live.state import new_secret, redact
from letta_matrix_reference.live.venv import ensure_venv, pinned_lines

log = logging.getLogger("letta_matrix_reference.live.letta")

LETTA_VERSION = "0.11.7"
REQUIREMENT = f"letta[server,sqlite]=={LETTA_VERSION}"
CONSTRAINTS_FILE = Path(__file__).parents[1] / "letta-constraints.txt"
FREE_HANDLE = "letta/letta-free"

#: Provider/tooling variables that would make Letta contact a service, dropped from its environment
#: (on top of every ``*_API_KEY``, ``*_BASE_URL`` ..., see :func:`live.net.server_env`).
_STRIP_PREFIXES = (
    "LETTA_",
    "OPENAI_",
    "ANTHROPIC_",
    "AZURE_",
    "GEMINI_",
    "GOOGLE_",
    "GROQ_",
    "MISTRAL_",
    "TOGETHER_",
    "OLLAMA_",
    "VLLM_",
    "LMSTUDIO_",
    "DEEPSEEK_",
    "XAI_",
    "AWS_",
    "BEDROCK_",
    "COMPOSIO_",
    "E2B_",
    "MODAL_",
    "TAVILY_",
    "EXA_",
    "PINECONE_",
    "TURBOPUFFER_",
    "LANGCHAIN_",
    "LANGSMITH_",
    "OTEL_",
    "PG_",
    "POSTGRES",
    "REDIS_",
    "SENTRY_",
    "MEMGPT_",
    "LOCAL_HTTPS",
    "ENV_NAME",
    "ACCEPTABLE_ORIGINS",
)


@dataclass(frozen=True)
class LettaInfo:
    url: str
    pid: int
    token: str  # the bearer password (LETTA_SERVER_PASSWORD)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def prepare_home(home: Path) -> Path:
    """Create the scratch ``HOME`` a Letta process runs with, seeded so that nothing phones home.

    composio (a Letta dependency) registers an ``atexit`` hook that fetches a Sentry DSN from
    ``backend.composio.dev`` unless its user-data file already holds one, whatever
    ``COMPOSIO_DISABLE_SENTRY`` says; an empty DSN satisfies that check and is never used.
    """
    (home / ".letta").mkdir(parents=True, exist_ok=True)
    composio = home / ".composio"
    composio.mkdir(parents=True, exist_ok=True)
    user_data = composio / "user_data.json"
    if not user_data.exists():
        user_data.write_text(json.dumps({"sentry": {"dsn": ""}}))
    return home


def offline_env(home: Path, password: str) -> dict[str, str]:
    """The environment a Letta server (or an import check) runs with: offline, secured, telemetry off."""
    return server_env(
        strip_prefixes=_STRIP_PREFIXES,
        extra={
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "LETTA_SERVER_SECURE": "true",
            "LETTA_SERVER_PASSWORD": password,
            "COMPOSIO_DISABLE_VERSION_CHECK": "true",  # else an import asks a package index
            "COMPOSIO_DISABLE_SENTRY": "true",  # else startup asks backend.composio.dev for a DSN
            "COMPOSIO_NO_REMOTE_ENUM_FETCHING": "true",
            "COMPOSIO_NO_CACHE_REFRESH": "true",
            "COMPOSIO_CACHE_DIR": str(home / ".composio"),
            "LETTA_DISABLE_TRACING": "true",
            "LETTA_TELEMETRY_PROFILER": "false",
            "TOKENIZERS_PARALLELISM": "false",
            "NLTK_DATA": str(home / "nltk_data"),
        },
    )


def release_key(requirement: str, constraints: Path) -> str:
    """What a cached venv of one Letta release is keyed by: its requirement and its constraints."""
    return requirement + "\n" + constraints.read_text()


def install_release(
    name: str, requirement: str, constraints: Path, cache_dir: Path | None, *, timeout: float
) -> Path:
    """Install one Letta release (`requirement`, constrained by `constraints`) into the cached venv `name`
    and check that its server imports offline; return its python. Idempotent; concurrent callers wait on a
    lock file."""
    key = release_key(requirement, constraints)
    cached = venv.installed_python(name, key, cache_dir)
    if cached is not None:
        return cached
    with tempfile.TemporaryDirectory(prefix=f"live-{name}-check-") as home:
        return ensure_venv(
            name,
            pip_args=[requirement, "-c", str(constraints)],
            key_material=key,
            cache_dir=cache_dir,
            prefetch=[requirement, *pinned_lines(constraints.read_text())],
            check_cmd=["-c", "import letta.server.rest_api.app, letta; print(letta.__version__)"],
            check_env=offline_env(prepare_home(Path(home)), new_secret()),
            timeout=timeout,
        )


def installed_python(cache_dir: Path | None = None) -> Path | None:
    """The cached venv's python if Letta is already installed, else None (installs nothing)."""
    return venv.installed_python("letta", release_key(REQUIREMENT, CONSTRAINTS_FILE), cache_dir)


def ensure_installed(cache_dir: Path | None = None, *, timeout: float = 2400.0) -> Path:
    """Install ``letta[server,sqlite]==0.11.7`` (constrained by ``letta-constraints.txt``) into a
    cached venv; return its python. Idempotent; concurrent callers wait on a lock file."""
    return install_release("letta", REQUIREMENT, CONSTRAINTS_FILE, cache_dir, timeout=timeout)


class LettaServer(ManagedServer[LettaInfo]):
    """One Letta server process. ``start()``/``stop()``, or use it as a (sync or async) context manager."""

    kind: ClassVar[str] = "letta"
    ready_path: ClassVar[str] = "/v1/health/"
    default_start_timeout: ClassVar[float] = 120.0

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int = 0,
        password: str | None = None,
        cache_dir: Path | None = None,
        detach: bool = False,
        keep_workdir: bool = False,
        secure: bool = True,
    ) -> None:
        super().__init__(workdir, port=port, cache_dir=cache_dir, detach=detach, keep_workdir=keep_workdir)
        self._password = password or new_secret(24)
        # False: Letta's default, no password middleware; it answers any token or none (token "").
        self._secure = secure

    def start(self, timeout: float | None = 120.0) -> LettaInfo:
        """Install if needed, start ``letta server`` and wait for ``GET /v1/health/`` to answer 200."""
        return super().start(timeout)

    def _install(self) -> Path:
        return ensure_installed(self._cache_dir)

    def _prepare(self, python: Path, workdir: Path, port: int) -> tuple[list[str], dict[str, str]]:
        home = prepare_home(workdir / "home")
        letta_bin = python.parent / "letta"
        cmd = [str(letta_bin), "server", "--host", LOOPBACK, "--port", str(port)]
        env = offline_env(home, self._password)
        if not self._secure:
            del env["LETTA_SERVER_SECURE"], env["LETTA_SERVER_PASSWORD"]
        env["PATH"] = f"{python.parent}:{env.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(python.parent.parent)
        return cmd, env

    def _on_ready(self, url: str, pid: int, deadline: float) -> LettaInfo:
        if not self._secure:
            return LettaInfo(url=url, pid=pid, token="")
        log.info("letta password %s", redact(self._password))
        return LettaInfo(url=url, pid=pid, token=self._password)

    def _secrets(self) -> list[str]:
        return [self._password]

    def _state(self, info: LettaInfo) -> dict[str, object]:
        return {"info": asdict(info)}


def llm_wiring(llm_url: str) -> dict[str, object]:
    """The agent fields that point its model and embeddings at an OpenAI-compatible endpoint such as
    ``live.fakellm`` (``http://127.0.0.1:PORT/v1``); nothing is contacted at creation."""
    return {
        "llm_config": {
            "model": "fake-llm",
            "model_endpoint_type": "openai",
            "model_endpoint": llm_url,
            "context_window": 128000,
        },
        "embedding_config": {
            "embedding_model": "fake-embed",
            "embedding_endpoint_type": "openai",
            "embedding_endpoint": llm_url,
            "embedding_dim": 1536,
        },
    }


async def create_agent(
    info: LettaInfo,
    name: str,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - part of the agreed API; bounds the whole request
    extra: Mapping[str, object] | None = None,
    llm_url: str | None = None,
) -> dict[str, object]:
    """``POST /v1/agents/`` with the offline ``letta/letta-free`` model and embedding, or, with ``llm_url``,
    wired to that OpenAI-compatible endpoint (:func:`llm_wiring`); returns the agent.

    ``extra`` adds or overrides request fields (``tags``, ``description``, ``memory_blocks``...).
    """
    import aiohttp

    body: dict[str, object] = (
        {"name": name, **llm_wiring(llm_url)}
        if llm_url
        else {"name": name, "model": FREE_HANDLE, "embedding": FREE_HANDLE}
    )
    if extra:
        body.update(extra)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.post(f"{info.url}/v1/agents/", json=body, headers=info.headers) as resp,
    ):
        text = await resp.text()
        if resp.status != 200:
            raise LiveError(f"POST /v1/agents/ answered {resp.status}: {text[:500]}")
    data: Any = json.loads(text)
    if not isinstance(data, dict) or "id" not in data:
        raise LiveError(f"POST /v1/agents/ answered an unexpected body: {text[:500]}")
    return cast(dict[str, object], data)
