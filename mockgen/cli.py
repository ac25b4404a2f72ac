"""`mockgen serve`: both mock services from the command line, until SIGINT or SIGTERM.

The first signal stops the servers gracefully, within `--shutdown-grace` and a second, and the exit status
is 0. A second signal gets the signal's default action: the process dies at once, killed by it (a shell
reports 130 for SIGINT, 143 for SIGTERM)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from mockgen.arguments import OneLineParser
from mockgen.http.dialects import CONTROL_TOKEN_HEADER
from mockgen.server import LOOP_FACTORY, Endpoints, MockServers
from mockgen.store.letta_turns import DEFAULT_VERSION, VERSIONS
from mockgen.world import DEFAULT_LETTA_TOKEN, MockConfig, World, load_seed_file

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535; 0 = any free port)")
    return value


# Where `--control-token` comes from when not given.
CONTROL_TOKEN_ENV = "MOCKGEN_CONTROL_TOKEN"


def ready_urls(process: subprocess.Popen[Any], timeout: float = 30.0) -> dict[str, str]:
    """{service: URL} from the two lines a `mockgen serve` child prints when ready, waited for with a deadline
    (TimeoutError; RuntimeError if it exits first). Read from the descriptor: a buffered reader may hold the
    second line where `select` cannot see it."""
    assert process.stdout is not None, "start mockgen serve with stdout=subprocess.PIPE"
    deadline = time.monotonic() + timeout
    received = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while received.count(b"\n") < 2:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise TimeoutError(f"mockgen serve not ready after {timeout} s")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("mockgen serve exited before it was ready")
            received += chunk
    return dict(line.strip().split(": ", 1) for line in received.decode().splitlines()[:2])


def _parser() -> argparse.ArgumentParser:
    defaults = MockConfig()
    parser = OneLineParser(prog="mockgen", description="Contract-checked mocks of Letta and Matrix.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve both mocks until interrupted")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; beyond loopback it warns)"
    )
    serve.add_argument("--letta-port", type=_port, default=8283, help="Letta mock port; 0 = any free port")
    serve.add_argument("--matrix-port", type=_port, default=8008, help="Matrix mock port; 0 = any free port")
    serve.add_argument(
        "--server-name", default="matrix.test", help="Matrix server name (default: matrix.test)"
    )
    serve.add_argument(
        "--letta-token",
        default=DEFAULT_LETTA_TOKEN,
        help="bearer token the Letta mock accepts; '' for an open Letta, which takes any token or none "
        f"(default: {DEFAULT_LETTA_TOKEN})",
    )
    serve.add_argument("--agents", type=int, default=0, help="number of extra demo agents to create")
    serve.add_argument("--seed", help="seed file (JSON or YAML) with users, agents and rooms")
    serve.add_argument(
        "--letta-format", choices=("array", "envelope"), default="array", help="agent list format"
    )
    serve.add_argument(
        "--letta-version",
        choices=VERSIONS,
        default=DEFAULT_VERSION,
        help="the Letta release the mock answers as",
    )
    serve.add_argument("--no-validate", action="store_true", help="do not check the mock's own answers")
    serve.add_argument(
        "--control-token",
        default=os.environ.get(CONTROL_TOKEN_ENV),
        help=f"require this token in {CONTROL_TOKEN_HEADER} on every /_mock/ call (default: "
        f"${CONTROL_TOKEN_ENV}, which, unlike the command line, other local users cannot read)",
    )
    limits = serve.add_argument_group("connection limits (the README says why these defaults)")
    limits.add_argument(
        "--header-timeout", type=_seconds, default=defaults.header_timeout, metavar="S",
        help="a request head is cut S seconds after its first byte (default: %(default)g)",
    )  # fmt: skip
    limits.add_argument(
        "--body-timeout", type=_seconds, default=defaults.body_timeout, metavar="S",
        help="a request body is cut after a pause of S seconds (default: %(default)g)",
    )  # fmt: skip
    limits.add_argument(
        "--keep-alive-timeout", type=_seconds, default=defaults.keep_alive_timeout, metavar="S",
        help="an idle connection is closed after S seconds (default: %(default)g)",
    )  # fmt: skip
    limits.add_argument(
        "--max-header-bytes", type=_count, default=defaults.max_header_bytes, metavar="N",
        help="a longer request line and headers get 431 (default: %(default)d)",
    )  # fmt: skip
    limits.add_argument(
        "--max-connections", type=_count, default=defaults.max_connections, metavar="N",
        help="open connections of both mocks together; at the cap the oldest idle one is closed "
        "(default: half the open-file limit, at most 1024)",
    )  # fmt: skip
    limits.add_argument(
        "--shutdown-grace", type=_seconds, default=defaults.shutdown_grace, metavar="S",
        help="at a stop, requests running after S seconds get 503 (default: %(default)g)",
    )  # fmt: skip
    return parser


def serve(args: argparse.Namespace) -> int:
    config = MockConfig(
        server_name=args.server_name,
        letta_token=args.letta_token or None,
        seed=load_seed_file(args.seed) if args.seed else {},
        agents=args.agents,
        letta_format=args.letta_format,
        letta_version=args.letta_version,
        validate=not args.no_validate,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        max_header_bytes=args.max_header_bytes,
        max_connections=args.max_connections,
        shutdown_grace=args.shutdown_grace,
        control_token=args.control_token or None,
    )
    servers = MockServers(
        World(config), host=args.host, letta_port=args.letta_port, matrix_port=args.matrix_port
    )
    # The compiled specs and apps live as long as the process: out of the collector's sight, they no
    # longer make every full collection walk them.
    gc.freeze()

    def announce(endpoints: Endpoints) -> None:
        print(f"letta: {endpoints.letta}", flush=True)
        print(f"matrix: {endpoints.matrix}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # A plain handler, not the loop's: it runs even while the loop is busy. The next signal gets
            # the default action, so a stop that does not come kills the process.
            for handled in STOP_SIGNALS:
                signal.signal(handled, signal.SIG_DFL)
            loop.call_soon_threadsafe(stop.set)

        before = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
        try:
            await servers.serve(stop, announce)
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)

    runner = asyncio.Runner(loop_factory=LOOP_FACTORY)
    with runner:
        runner.run(main())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        return serve(args)
    except OSError as exc:
        print(f"mockgen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"mockgen: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
