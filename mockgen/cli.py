"""`mockgen serve`: both mock services from the command line, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence

from mockgen.http.dialects import CONTROL_TOKEN_HEADER
from mockgen.server import LOOP_FACTORY, Endpoints, MockServers
from mockgen.world import DEFAULT_LETTA_TOKEN, MockConfig, World, load_seed_file

# Where `--control-token` comes from when not given.
CONTROL_TOKEN_ENV = "MOCKGEN_CONTROL_TOKEN"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mockgen", description="Contract-checked mocks of Letta and Matrix."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve both mocks until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--letta-port", type=int, default=8283, help="Letta mock port; 0 = any free port")
    serve.add_argument("--matrix-port", type=int, default=8008, help="Matrix mock port; 0 = any free port")
    serve.add_argument(
        "--server-name", default="matrix.test", help="Matrix server name (default: matrix.test)"
    )
    serve.add_argument(
        "--letta-token", default=DEFAULT_LETTA_TOKEN, help="bearer token the Letta mock accepts"
    )
    serve.add_argument("--agents", type=int, default=0, help="number of extra demo agents to create")
    serve.add_argument("--seed", help="seed file (JSON or YAML) with users, agents and rooms")
    serve.add_argument(
        "--letta-format", choices=("array", "envelope"), default="array", help="agent list format"
    )
    serve.add_argument("--no-validate", action="store_true", help="do not check the mock's own answers")
    serve.add_argument(
        "--control-token",
        default=os.environ.get(CONTROL_TOKEN_ENV),
        help=f"require this token in {CONTROL_TOKEN_HEADER} on every /_mock/ call (default: "
        f"${CONTROL_TOKEN_ENV}, which, unlike the command line, other local users cannot read)",
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    config = MockConfig(
        server_name=args.server_name,
        letta_token=args.letta_token,
        seed=load_seed_file(args.seed) if args.seed else {},
        agents=args.agents,
        letta_format=args.letta_format,
        validate=not args.no_validate,
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
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await servers.serve(stop, announce)

    runner = asyncio.Runner(loop_factory=LOOP_FACTORY)
    with runner:
        runner.run(main())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        return serve(args)
    except (OSError, ValueError) as exc:
        print(f"mockgen: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
