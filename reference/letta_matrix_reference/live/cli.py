"""Command line for Makefiles and CI scripts; every command prints exactly one JSON line on stdout.

    python -m letta_matrix_reference.live.synapse install          # {"kind", "python", "seconds"}
    python -m letta_matrix_reference.live.synapse start [--workdir D] # detached: {"url", "pid", ...}
    python -m letta_matrix_reference.live.synapse status --workdir D  # {"running": true|false, ...}
    python -m letta_matrix_reference.live.synapse stop --workdir D    # {"stopped": true|false}
    python -m letta_matrix_reference.live.synapse run ...             # foreground until SIGINT/SIGTERM

(the same for ``live.letta`` and ``live.letta016``; ``python -m letta_matrix_reference.live synapse ...``
works too).
``start`` leaves the server running after the command returns; ``stop --workdir`` ends it (by PID,
checked against the recorded process start time) and removes the workdir if ``start`` created it. Logs
(secrets redacted) go to stderr; stdout carries only the JSON, which does include the credentials.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from letta_matrix_reference.live import letta, letta016, synapse
from letta_matrix_reference.live.errors import LiveError
from letta_matrix_reference.live.process import is_same_process, rss_bytes
from letta_matrix_reference.live.server import ManagedServer, stop_from_state
from letta_matrix_reference.live.state import read_state, tail_file

log = logging.getLogger("letta_matrix_reference.live.cli")


@dataclass(frozen=True)
class _Kind:
    name: str
    install: Callable[[Path | None], Path]
    make: Callable[[argparse.Namespace, bool], ManagedServer[Any]]
    add_args: Callable[[argparse.ArgumentParser], None]
    default_timeout: float


def _synapse_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server-name", default=synapse.DEFAULT_SERVER_NAME)
    p.add_argument("--admin-username", default=synapse.ADMIN_USERNAME)


def _synapse(ns: argparse.Namespace, detach: bool) -> ManagedServer[Any]:
    return synapse.SynapseServer(
        ns.workdir,
        port=ns.port,
        server_name=ns.server_name,
        cache_dir=ns.cache_dir,
        admin_username=ns.admin_username,
        detach=detach,
    )


def _letta_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password", default=None, help="bearer password (default: random)")


def _letta(ns: argparse.Namespace, detach: bool) -> ManagedServer[Any]:
    return letta.LettaServer(
        ns.workdir, port=ns.port, password=ns.password, cache_dir=ns.cache_dir, detach=detach
    )


def _letta016(ns: argparse.Namespace, detach: bool) -> ManagedServer[Any]:
    return letta016.Letta016Server(
        ns.workdir, port=ns.port, password=ns.password, cache_dir=ns.cache_dir, detach=detach
    )


_KINDS = {
    kind.name: kind
    for kind in (
        _Kind("synapse", synapse.ensure_installed, _synapse, _synapse_args, 60.0),
        _Kind("letta", letta.ensure_installed, _letta, _letta_args, 120.0),
        _Kind("letta016", letta016.ensure_installed, _letta016, _letta_args, 240.0),
    )
}


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    sys.stdout.flush()


def _info_payload(kind: str, server: ManagedServer[Any], info: object) -> dict[str, Any]:
    payload: dict[str, Any] = {"kind": kind}
    if is_dataclass(info) and not isinstance(info, type):
        payload.update(asdict(info))
    payload["workdir"] = str(server.workdir)
    payload["log"] = str(server.log_path)
    return payload


def _parser(kind: _Kind) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m letta_matrix_reference.live.{kind.name}", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("install", help="create/reuse the cached venv")
    p.add_argument("--cache-dir", type=Path, default=None)

    for name, help_ in (("start", "start detached, print info, return"), ("run", "run in the foreground")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--workdir", type=Path, default=None, help="default: a new temp dir")
        p.add_argument("--port", type=int, default=0, help="default: a free loopback port")
        p.add_argument("--cache-dir", type=Path, default=None)
        p.add_argument("--timeout", type=float, default=kind.default_timeout, help="readiness deadline (s)")
        kind.add_args(p)

    p = sub.add_parser("stop", help="stop the server started in --workdir")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=10.0, help="SIGTERM grace period before SIGKILL (s)")
    p.add_argument("--keep-workdir", action="store_true")

    p = sub.add_parser("status", help="is the server started in --workdir running?")
    p.add_argument("--workdir", type=Path, required=True)
    return parser


def _cmd_install(kind: _Kind, ns: argparse.Namespace) -> int:
    t0 = time.monotonic()
    python = kind.install(ns.cache_dir)
    _emit({"kind": kind.name, "python": str(python), "seconds": round(time.monotonic() - t0, 2)})
    return 0


def _cmd_start(kind: _Kind, ns: argparse.Namespace) -> int:
    server = kind.make(ns, True)
    info = server.start(ns.timeout)
    _emit(_info_payload(kind.name, server, info))
    return 0


def _cmd_run(kind: _Kind, ns: argparse.Namespace) -> int:
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = kind.make(ns, False)
    info = server.start(ns.timeout)
    _emit(_info_payload(kind.name, server, info))
    try:
        while not stop_requested.wait(0.5):
            pid = server.pid
            if pid is None or not is_same_process(pid, None):
                log_path = server.log_path
                tail = tail_file(log_path) if log_path is not None else ""
                log.error("%s exited unexpectedly; last lines of its log:\n%s", kind.name, tail)
                return 1
    finally:
        server.stop()
    return 0


def _cmd_stop(kind: _Kind, ns: argparse.Namespace) -> int:
    stopped = stop_from_state(ns.workdir, timeout=ns.timeout, keep_workdir=ns.keep_workdir)
    _emit({"kind": kind.name, "stopped": stopped, "workdir": str(ns.workdir)})
    return 0


def _cmd_status(kind: _Kind, ns: argparse.Namespace) -> int:
    try:
        state = read_state(ns.workdir)
    except LiveError:
        _emit({"kind": kind.name, "running": False, "workdir": str(ns.workdir)})
        return 1
    pid = int(state["pid"])
    running = is_same_process(pid, state.get("start_ticks"))
    _emit(
        {
            "kind": kind.name,
            "running": running,
            "pid": pid,
            "url": state.get("url"),
            "workdir": str(ns.workdir),
            "rss_bytes": rss_bytes(pid) if running else None,
        }
    )
    return 0 if running else 1


_COMMANDS: dict[str, Callable[[_Kind, argparse.Namespace], int]] = {
    "install": _cmd_install,
    "start": _cmd_start,
    "run": _cmd_run,
    "stop": _cmd_stop,
    "status": _cmd_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _KINDS:
        sys.stderr.write(f"usage: python -m letta_matrix_reference.live {{{','.join(_KINDS)}}} COMMAND ...\n")
        return 2
    kind = _KINDS[args[0]]
    ns = _parser(kind).parse_args(args[1:])
    level = logging.DEBUG if ns.verbose else logging.WARNING if ns.quiet else logging.INFO
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        return _COMMANDS[ns.command](kind, ns)
    except LiveError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
