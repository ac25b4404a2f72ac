"""PostgreSQL 15 with pgvector for Letta 0.16.8, from Debian's packages: installing it on the machine, and
one private cluster per server (initdb, the postgres command line, readiness).

Debian 12 packages PostgreSQL 15 but not pgvector, so :func:`ensure_system` installs ``postgresql-15`` and
``postgresql-server-dev-15`` with apt and builds pgvector from the Debian source package of the next release
(``apt-get source`` through a private apt configuration: the machine's own sources are left alone),
checked against :data:`PGVECTOR_ORIG_SHA256`, then ``make install``s it into PostgreSQL's directories. That
needs root; everything else here does not. Standard library only: the supervisor imports this module from
Letta's venv.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to, and runs as, the ``postgres``
user the Debian package creates.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from letta_matrix_reference.live.errors import InstallError, LiveError, ServerStartError
from letta_matrix_reference.live.venv import default_cache_dir, file_lock, run_logged

log = logging.getLogger("letta_matrix_reference.live.postgres")

PG_MAJOR = 15
BINDIR = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
# libpq-dev puts pg_config on PATH for the build of psycopg2, one of the Letta pins.
APT_PACKAGES = (f"postgresql-{PG_MAJOR}", f"postgresql-server-dev-{PG_MAJOR}", "libpq-dev", "make", "gcc")
LIBPQ_PG_CONFIG = Path("/usr/bin/pg_config")
#: The Debian release whose source package of pgvector is built (bookworm, the machine's, has none).
PGVECTOR_SUITE = "trixie"
PGVECTOR_VERSION = "0.8.0"
#: sha256 of ``pgvector_0.8.0.orig.tar.gz``, the upstream tarball of that source package.
PGVECTOR_ORIG_SHA256 = "867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0"
SERVICE_USER = "postgres"
DATABASE = "letta"
DB_USER = "letta"


def pg_config(field: str) -> Path:
    """A directory PostgreSQL was built with (``--sharedir``, ``--pkglibdir``)."""
    out = subprocess.run(
        [str(BINDIR / "pg_config"), f"--{field}"], capture_output=True, text=True, check=True, timeout=30
    )
    return Path(out.stdout.strip())


def missing_system_parts() -> list[str]:
    """What :func:`ensure_system` would install; empty when PostgreSQL and pgvector are in place."""
    missing = [
        name
        for name in ("postgres", "initdb", "pg_isready", "psql", "pg_config")
        if not (BINDIR / name).exists()
    ]
    if missing:
        return [f"PostgreSQL {PG_MAJOR} ({', '.join(missing)} not in {BINDIR})"]
    if not LIBPQ_PG_CONFIG.exists():
        return [f"libpq-dev ({LIBPQ_PG_CONFIG} missing)"]
    control = pg_config("sharedir") / "extension" / "vector.control"
    try:
        text = control.read_text()
    except OSError:
        return [f"pgvector ({control} missing)"]
    if (
        f"default_version = '{PGVECTOR_VERSION}'" not in text
        or not (pg_config("pkglibdir") / "vector.so").exists()
    ):
        return [f"pgvector {PGVECTOR_VERSION} ({control} is another version)"]
    return []


def ensure_system(cache_dir: Path | None = None, *, timeout: float = 900.0) -> None:
    """Install PostgreSQL 15 (apt) and build pgvector into it, unless both are there already. Needs root."""
    if not missing_system_parts():
        return
    cache = default_cache_dir(cache_dir)
    with file_lock(cache / "postgres-system.lock", timeout=timeout):
        missing = missing_system_parts()
        if not missing:
            return
        if os.geteuid() != 0:
            raise InstallError(
                f"Letta 0.16.8 needs {' and '.join(missing)}; installing them needs root: "
                "sudo python -m letta_matrix_reference.live letta016 install"
            )
        install_log = cache / "postgres-system.install.log"
        install_log.write_bytes(b"")
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        log.info("installing PostgreSQL %d and pgvector %s (log %s)", PG_MAJOR, PGVECTOR_VERSION, install_log)
        _apt_install(install_log, deadline)
        if missing_system_parts():
            _build_pgvector(install_log, deadline)
        still = missing_system_parts()
        if still:
            raise InstallError(f"after installing, still missing: {', '.join(still)}; log {install_log}")
        log.info("installed PostgreSQL %d and pgvector in %.1fs", PG_MAJOR, time.monotonic() - t0)


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _apt_install(install_log: Path, deadline: float) -> None:
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    try:
        run_logged(
            cmd, install_log, timeout=deadline - time.monotonic(), env=_apt_env(), what="apt-get install"
        )
    except InstallError:
        # A fresh machine has no (or stale) package lists.
        run_logged(
            ["apt-get", "update", "-q"],
            install_log,
            timeout=deadline - time.monotonic(),
            env=_apt_env(),
            what="apt-get update",
        )
        run_logged(
            cmd, install_log, timeout=deadline - time.monotonic(), env=_apt_env(), what="apt-get install"
        )


@dataclass(frozen=True)
class AptSource:
    uri: str
    signed_by: str | None


def machine_debian_source(root: Path = Path("/")) -> AptSource:
    """The Debian archive this machine's apt uses for its own release (its ``main`` suite), so that
    the source package comes from where the binary packages do."""
    codename = _os_codename(root)
    etc = root / "etc" / "apt"
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = _deb822(stanza)
            suites = fields.get("suites", "").split()
            if codename in suites and "main" in fields.get("components", "").split() and fields.get("uris"):
                return AptSource(fields["uris"].split()[0], fields.get("signed-by"))
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            m = re.match(
                r"^deb\s+(?:\[(?P<opts>[^]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s+(?P<comps>.*)$",
                line.strip(),
            )
            if m and m["suite"] == codename and "main" in m["comps"].split():
                opts = dict(o.split("=", 1) for o in (m["opts"] or "").split() if "=" in o)
                return AptSource(m["uri"], opts.get("signed-by"))
    raise InstallError(f"no Debian '{codename} main' source in {etc}: cannot fetch pgvector's source package")


def _os_codename(root: Path) -> str:
    for line in (root / "etc" / "os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise InstallError("no VERSION_CODENAME in /etc/os-release: not a Debian machine?")


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


def _build_pgvector(install_log: Path, deadline: float) -> None:
    source = machine_debian_source()
    with tempfile.TemporaryDirectory(prefix="live-pgvector-") as scratch:
        tmp = Path(scratch)
        (tmp / "lists" / "partial").mkdir(parents=True)
        (tmp / "cache" / "archives" / "partial").mkdir(parents=True)
        signed = f" [signed-by={source.signed_by}]" if source.signed_by else ""
        (tmp / "sources.list").write_text(f"deb-src{signed} {source.uri} {PGVECTOR_SUITE} main\n")
        apt_opts = [
            f"-oDir::Etc::SourceList={tmp / 'sources.list'}",
            f"-oDir::Etc::SourceParts={tmp / 'no-parts'}",
            f"-oDir::State::Lists={tmp / 'lists'}",
            f"-oDir::Cache={tmp / 'cache'}",
            "-oAPT::Sandbox::User=root",
        ]
        for what, args in (
            ("apt-get update (pgvector source)", ["update", "-q"]),
            ("apt-get source pgvector", ["source", "--download-only", "-q", "pgvector"]),
        ):
            run_logged(
                ["apt-get", *apt_opts, *args],
                install_log,
                timeout=deadline - time.monotonic(),
                env=_apt_env(),
                cwd=tmp,
                what=what,
            )
        orig = tmp / f"pgvector_{PGVECTOR_VERSION}.orig.tar.gz"
        if not orig.is_file():
            found = sorted(p.name for p in tmp.glob("pgvector_*.orig.tar.*"))
            raise InstallError(
                f"Debian {PGVECTOR_SUITE} no longer has pgvector {PGVECTOR_VERSION} (it has {found}); "
                "update PGVECTOR_VERSION and PGVECTOR_ORIG_SHA256 in live/postgres.py"
            )
        digest = hashlib.sha256(orig.read_bytes()).hexdigest()
        if digest != PGVECTOR_ORIG_SHA256:
            raise InstallError(f"{orig.name} has sha256 {digest}, expected {PGVECTOR_ORIG_SHA256}")
        build = tmp / "build"
        with tarfile.open(orig) as tar:
            tar.extractall(build, filter="data")
        (src,) = [p for p in build.iterdir() if p.is_dir()]
        # OPTFLAGS empty: no -march=native; no LLVM bitcode: the JIT is not used and clang is slow.
        make_args = [f"PG_CONFIG={BINDIR / 'pg_config'}", "OPTFLAGS=", "with_llvm=no"]
        for what, args in (("building pgvector", ["-j2"]), ("installing pgvector", ["install"])):
            run_logged(
                ["make", *args, *make_args],
                install_log,
                timeout=deadline - time.monotonic(),
                cwd=src,
                what=what,
            )


# -- one private cluster ---------------------------------------------------------------------------


def _service_ids() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root, else None (it runs as we do)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise LiveError(
            f"running as root and there is no '{SERVICE_USER}' user to run PostgreSQL as"
        ) from None
    return entry.pw_uid, entry.pw_gid


def prepare_cluster(pgdir: Path, password: str) -> Path:
    """``initdb`` a cluster in ``pgdir/data`` (once: a data dir already there is reused); return it.

    The superuser is :data:`DB_USER` with ``password`` (scram); only TCP on 127.0.0.1 is configured later.
    """
    data = pgdir / "data"
    if (data / "PG_VERSION").is_file():
        return data
    ids = _service_ids()
    pgdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if ids is not None:
        # the service user must reach pgdir; a temp workdir is root's and 0700 (its files stay 0600)
        workdir = pgdir.parent
        workdir.chmod(workdir.stat().st_mode | 0o001)
        os.chown(pgdir, *ids)
    pwfile = pgdir / "initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    if ids is not None:
        os.chown(pwfile, *ids)
    try:
        subprocess.run(
            [
                str(BINDIR / "initdb"),
                "-D",
                str(data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ],
            stdin=subprocess.DEVNULL,
            cwd=str(pgdir),
            check=True,
            timeout=120,
            # Popen's own uid switch keeps the caller's process group (runuser and su start a session)
            user=ids[0] if ids else None,
            group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
        )
    except subprocess.CalledProcessError as exc:
        raise ServerStartError(f"initdb failed with exit code {exc.returncode}") from None
    finally:
        pwfile.unlink(missing_ok=True)
    return data


def start_postgres(data: Path, port: int, *, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``postgres`` on 127.0.0.1:``port`` (no unix socket) in the caller's process group, its log on
    the caller's stderr.

    Durability is off (a scratch database); dynamic shared memory lives in the data dir, so nothing is
    left in /dev/shm if the group is killed.
    """
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "dynamic_shared_memory_type": "mmap",
        "logging_collector": "off",
        "log_min_messages": "warning",
    }
    args = [f"-c{k}={v}" for k, v in settings.items()]
    ids = _service_ids()
    return subprocess.Popen(
        [str(BINDIR / "postgres"), "-D", str(data), *args],
        stdin=subprocess.DEVNULL,
        env=dict(env),
        cwd=str(data.parent),
        user=ids[0] if ids else None,
        group=ids[1] if ids else None,
        extra_groups=[] if ids else None,
    )


def wait_for_postgres(proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    """Wait until ``pg_isready`` says the server on ``port`` accepts connections."""
    while True:
        if proc.poll() is not None:
            raise ServerStartError(f"postgres exited with code {proc.returncode} before it was ready")
        ready = subprocess.run(
            [str(BINDIR / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"],
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )
        if ready.returncode == 0:
            return
        if time.monotonic() >= deadline:
            raise ServerStartError(f"postgres on port {port} was not ready before the deadline")
        time.sleep(0.1)


def psql(port: int, password: str, sql: str, *, database: str = "postgres") -> str:
    """Run one SQL statement as :data:`DB_USER` over TCP; return psql's unaligned output."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"}
    out = subprocess.run(
        [
            str(BINDIR / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            DB_USER,
            "-d",
            database,
            "-XqtA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if out.returncode != 0:
        raise LiveError(f"psql failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip()


def database_uri(port: int, password: str, *, driver: str = "") -> str:
    """The URI Letta is given. ``sslmode=disable``: Letta's asyncpg engine asks for TLS unless told not to."""
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return f"{scheme}://{DB_USER}:{password}@127.0.0.1:{port}/{DATABASE}?sslmode=disable"
