"""`python -m letta_matrix_reference.bridge sync`: one sync (`--once`, the default) or one every
`--interval` seconds. `relay`: a sync, then relaying people's messages to their agents and the answers
back until SIGINT/SIGTERM (a turn under way is finished first), with a sync every `--interval` seconds
(default 60) to take in new agents.

Every required option falls back to an environment variable (`--letta` to LETTA_URL, ...); prefer the
environment for the token and passwords, since command lines are visible to every local user.

Exit codes: 0 every agent is in sync; 1 some agents (or the agent listing) failed, or the listing was
incomplete, and the next run retries; 2 the bridge cannot run as configured (a missing or refused setting,
an unreadable mapping file)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

from letta_matrix_reference.bridge.config import REQUIRED, BridgeConfig
from letta_matrix_reference.bridge.errors import BridgeError, FatalError
from letta_matrix_reference.bridge.http import Sleep
from letta_matrix_reference.bridge.relay import Relay
from letta_matrix_reference.bridge.sync import Bridge, SyncReport

log = logging.getLogger("letta_matrix_reference.bridge")

EXIT_OK, EXIT_FAILED, EXIT_CONFIGURATION = 0, 1, 2
_HELP = {
    "letta_url": "Letta base URL",
    "letta_token": "Letta server password (bearer token)",
    "matrix_url": "the homeserver's base URL",
    "server_name": "the homeserver's server name (the part after ':' in user ids)",
    "admin_user": "a server admin's user name",
    "admin_password": "the server admin's password",
    "bot_user": "the bot's user name (created with the admin API if missing)",
    "bot_password": "the bot's password",
    "data_dir": "directory for the mapping file (holds passwords: keep it private)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letta_matrix_reference.bridge", description="Letta -> Matrix bridge."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser(
        "sync", help="give every Letta agent a Matrix user, room and place in the space"
    )
    relay = commands.add_parser(
        "relay", help="sync, then carry people's messages in agent rooms to the agents and their answers back"
    )
    for command in (sync, relay):
        for setting in REQUIRED:
            command.add_argument(
                setting.flag,
                dest=setting.name,
                metavar=setting.env,
                help=f"{_HELP[setting.name]} [${setting.env}]",
            )
        command.add_argument("--space-name", help='name of the space (default: "Letta Agents")')
        command.add_argument("--concurrency", type=int, help="agents processed at once (default: 8)")
        command.add_argument(
            "--timeout", dest="request_timeout", type=float, help="seconds per request (default: 30)"
        )
        command.add_argument(
            "--max-attempts", type=int, help="tries per request, the first included (default: 5)"
        )
        command.add_argument("-v", "--verbose", action="store_true", help="log every step")
    when = sync.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="sync once and exit (the default)")
    when.add_argument("--interval", type=float, metavar="SECONDS", help="sync every SECONDS until stopped")
    relay.add_argument(
        "--interval", type=float, metavar="SECONDS", help="sync agents every SECONDS (default: 60)"
    )
    return parser


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    names = [setting.name for setting in REQUIRED]
    names += ["space_name", "concurrency", "request_timeout", "max_attempts"]
    settings = {name: getattr(args, name) for name in names}
    if args.interval is not None:
        settings["poll_interval"] = args.interval
    return settings


def main(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *, sleep: Sleep = asyncio.sleep
) -> int:
    """Run the command line; its exit code. `env` stands in for the environment and `sleep` for how to wait
    between retries (tests pass their own)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = BridgeConfig.from_sources(_settings(args), os.environ if env is None else env)
    except FatalError as exc:
        log.error("%s", exc)
        return EXIT_CONFIGURATION
    # The config's repr leaves out the token and passwords.
    log.info("starting: %r", config)
    if args.command == "relay":
        return asyncio.run(_relay(config, sleep=sleep))
    return asyncio.run(_serve(config, forever=args.interval is not None, sleep=sleep))


@contextlib.contextmanager
def _stopped_by_signals(after: str) -> Iterator[asyncio.Event]:
    """SIGINT and SIGTERM while the block runs: the first sets the event it yields, so the work under way
    finishes (and is saved); a second cancels the running task at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    serving = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and serving is not None:
            serving.cancel()
        else:
            log.info("stopping after %s (signal again to stop now)", after)
            stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _until_stopped(
    work: Callable[[asyncio.Event], Awaitable[int]], *, after: str, interrupted: str
) -> int:
    """`work(stop)` under the two-signal stop, its errors as exit codes: a configuration error, or a second
    signal (`interrupted` says what the next run does about the work cut short)."""
    with _stopped_by_signals(after) as stop:
        try:
            return await work(stop)
        except FatalError as exc:
            log.error("%s", exc)
            return EXIT_CONFIGURATION
        except asyncio.CancelledError:
            log.warning("stopped in the middle of %s", interrupted)
            return EXIT_FAILED


async def _serve(config: BridgeConfig, *, forever: bool, sleep: Sleep) -> int:
    # A second signal still leaves the mapping saved on the way out, and every step is safe to redo.
    async def syncs(stop: asyncio.Event) -> int:
        async with Bridge(config, sleep=sleep) as bridge:
            while True:
                code = await _sync(bridge)
                if code == EXIT_CONFIGURATION or not forever or stop.is_set():
                    return code
                try:
                    await asyncio.wait_for(stop.wait(), config.poll_interval)
                except TimeoutError:
                    continue
                log.info("stopping")
                return code

    return await _until_stopped(
        syncs, after="this sync", interrupted="a sync; the next run carries on from there"
    )


async def _relay(config: BridgeConfig, *, sleep: Sleep) -> int:
    """Sync, relay until the next sync is due, sync again (new agents' rooms join the relay), until a
    signal: the first lets the turn under way finish (and be saved), a second stops at once."""
    loop = asyncio.get_running_loop()

    async def relays(stop: asyncio.Event) -> int:
        async with Bridge(config, sleep=sleep) as bridge:
            relay = Relay(bridge, sleep=sleep)
            while not stop.is_set():
                if await _sync(bridge) == EXIT_CONFIGURATION:
                    return EXIT_CONFIGURATION
                await relay.start()
                due = asyncio.Event()
                timer = loop.call_later(config.poll_interval, due.set)
                stopper = asyncio.ensure_future(_either(stop, due))
                try:
                    await relay.run(due, forever=True)
                finally:
                    timer.cancel()
                    stopper.cancel()
            log.info("stopped")
            return EXIT_OK

    return await _until_stopped(
        relays, after="the turn under way", interrupted="a turn; the next run finishes it"
    )


async def _either(stop: asyncio.Event, due: asyncio.Event) -> None:
    """Set `due` when `stop` is set: the relay waits on one event for both."""
    await stop.wait()
    due.set()


async def _sync(bridge: Bridge) -> int:
    try:
        report: SyncReport = await bridge.sync_once()
    except FatalError as exc:
        log.error("%s", exc)
        return EXIT_CONFIGURATION
    except BridgeError as exc:
        log.error("sync failed: %s", exc)
        return EXIT_FAILED
    for failure in report.failed:
        log.warning("not in sync: agent %s (%s): %s", failure.agent_id, failure.name, failure.reason)
    if not report.listing_complete:
        log.warning(
            "not in sync: Letta's agent listing was incomplete (the page cap, or a repeated cursor); agents "
            "it missed were neither synced nor marked removed"
        )
    return EXIT_OK if report.ok else EXIT_FAILED
