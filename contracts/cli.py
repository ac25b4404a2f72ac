"""`contracts`: check recorded traffic, fuzz a client, check live servers, compare with the upstream spec."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from contracts.core import validator_for
from contracts.exchanges import validate_file

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    """Register a subcommand: `configure` adds its arguments, the decorated function runs it."""

    def register(run: Command) -> Command:
        COMMANDS[name] = (configure, run)
        return run

    return register


def _validate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec", required=True, help="letta, matrix, control, or the path of an OpenAPI document"
    )
    parser.add_argument("--exchanges", required=True, type=Path, help="a JSON-lines recording of exchanges")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


@command("validate", _validate_args)
def validate(args: argparse.Namespace) -> int:
    """Check every recorded exchange against the spec; exit 1 if any breaks it."""
    try:
        validator = validator_for(args.spec)
        report = validate_file(validator, args.exchanges)
    except (OSError, ValueError) as exc:
        print(f"contracts validate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "checked": report.checked,
                    "failed": len(report.failures),
                    "failures": [
                        {
                            "line": n,
                            "method": e.method,
                            "url": e.url,
                            "violations": [v.to_dict() for v in found],
                        }
                        for n, e, found in report.failures
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for number, exchange, found in report.failures:
            print(f"{args.exchanges}:{number}: {exchange.method} {exchange.path} -> {exchange.status}")
            for violation in found:
                print(f"  {violation.message}")
        print(f"{report.checked} exchange(s) checked, {len(report.failures)} with violations")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contracts", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (configure, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=(run.__doc__ or "").splitlines()[0])
        configure(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
