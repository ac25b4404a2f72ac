"""`contracts`: check recorded traffic, fuzz a client, check live servers, compare with the upstream spec."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from contracts.exchanges import validate_file
from contracts.validation import validator_for
from mockgen.arguments import OneLineParser

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


def _fuzz_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        required=True,
        help="the client to fuzz, module:callable (the reference bridge's: "
        "letta_matrix_reference.bridge.target:fuzz_sync)",
    )
    parser.add_argument("--examples", type=int, default=100, help="examples to run (default: 100)")
    parser.add_argument("--seed", type=int, help="seed for the example generator (default: random, printed)")
    parser.add_argument(
        "--replay", type=Path, help="run one example again: the plan file (plan.json) a failure wrote"
    )
    parser.add_argument(
        "--no-sweep", action="store_true", help="random examples only, without the sweep that starts a run"
    )
    parser.add_argument(
        "--sweep-only",
        action="store_true",
        help="run only the sweep: each list format and documented error once",
    )
    parser.add_argument("--report", type=Path, help="write coverage.md, coverage.json and fuzz.json here")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes, each with its own mock (default: 1)"
    )
    parser.add_argument("--threshold", type=float, default=1.0, help="minimum coverage ratio (default: 1.0)")
    parser.add_argument("--time-bound", type=float, default=20.0, help="seconds one target run may take")
    parser.add_argument(
        "--real-time",
        action="store_true",
        help="run the target on real time, the mock on a thread of its own (default: virtual time, where "
        "sleeps and timeouts cost no wall time; for a target that blocks its event loop)",
    )
    parser.add_argument(
        "--database",
        help="Hypothesis example database, shared by shards: a directory, or redis://HOST:PORT/N on loopback",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--app-dir", type=Path, default=Path(), help="directory the target is imported from (default: .)"
    )
    parser.add_argument(
        "--server-name", default="matrix.test", help="the Matrix mock's server name (default: matrix.test)"
    )
    parser.add_argument(
        "--letta-token",
        default="mock-letta-token",
        help="the Letta mock's bearer token; '' for an open Letta that takes any (default: mock-letta-token)",
    )


@command("fuzz", _fuzz_args)
def fuzz_command(args: argparse.Namespace) -> int:
    """Serve a client every answer the contract allows, check its invariants and the coverage reached."""
    from contracts.harness.fuzz.reporting import run_fuzz_command

    return run_fuzz_command(args)


def _coverage_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reports",
        nargs="+",
        type=Path,
        help="coverage.json files, or directories holding them (searched deeply)",
    )
    parser.add_argument("--threshold", type=float, default=1.0, help="minimum coverage ratio (default: 1.0)")
    parser.add_argument("--report", type=Path, help="write the merged coverage.md and coverage.json here")


@command("coverage", _coverage_args)
def coverage_command(args: argparse.Namespace) -> int:
    """Merge the coverage of fuzz shards (processes, machines); exit 1 below the threshold."""
    from contracts.coverage import Coverage, describe_cell

    missing = [str(path) for path in args.reports if not path.exists()]
    if missing:
        print(f"contracts coverage: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    files = sorted(
        {
            found
            for path in args.reports
            for found in ([path] if path.is_file() else path.rglob("coverage.json"))
        }
    )
    if not files:
        print("contracts coverage: no coverage.json found", file=sys.stderr)
        return 2
    merged = Coverage()
    for path in files:
        try:
            merged.merge(Coverage.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"contracts coverage: {path} is not a coverage report ({exc!r})", file=sys.stderr)
            return 2
    print(
        f"contracts coverage: {len(files)} report(s),"
        f" {merged.exercised}/{len(merged.cells)} cells ({merged.ratio:.1%})"
    )
    if args.report:
        markdown, _ = merged.write(args.report)
        print(f"  report: {markdown}")
    if not merged.cells and args.threshold > 0:
        print("  nothing to cover: the reports hold no cells (no documented operation was called)")
        return 1
    if merged.ratio < args.threshold:
        print(f"  below the threshold {args.threshold:.0%}; never exercised:")
        for cell in merged.missing():
            print(f"    {describe_cell(cell)}")
        return 1
    return 0


def _upstream_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--matrix-spec", required=True, type=Path, help="a checkout of matrix-org/matrix-spec"
    )
    parser.add_argument("--spec", default="matrix", help="our Matrix contract (default: matrix)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")


@command("upstream-diff", _upstream_args)
def upstream_diff(args: argparse.Namespace) -> int:
    """Compare our Matrix operations with the upstream Matrix spec; exit 1 on drift."""
    from contracts.upstream import compare, report_text

    try:
        report = compare(validator_for(args.spec), args.matrix_spec)
    except (OSError, ValueError) as exc:
        print(f"contracts upstream-diff: {exc}", file=sys.stderr)
        return 2
    if args.json:
        findings = [vars(finding) | {"drift": finding.drift} for finding in report.findings]
        print(
            json.dumps({"checked": report.checked, "matched": report.matched, "findings": findings}, indent=2)
        )
    else:
        print(report_text(report))
    return 1 if report.drift else 0


def _check_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", help="base URL of a homeserver, e.g. http://127.0.0.1:8008")
    parser.add_argument(
        "--matrix-admin-token", help="a server admin's token (for the Synapse admin API steps)"
    )
    parser.add_argument("--letta", help="base URL of a Letta server, e.g. http://127.0.0.1:8283")
    parser.add_argument("--letta-token", help="Letta's bearer password")
    parser.add_argument(
        "--letta-llm",
        help="an OpenAI-compatible base URL Letta can reach, e.g. http://127.0.0.1:PORT/v1: the agents of "
        "the chat steps talk to it (without it those steps are skipped)",
    )
    parser.add_argument("--report", type=Path, help="also write the report as JSON to this file")
    parser.add_argument("--allow-remote", action="store_true", help="allow servers that are not on loopback")


def _live_bases(args: argparse.Namespace, name: str) -> dict[str, str] | None:
    """{service: URL} from --matrix/--letta; None (after saying why) when there are none or one is remote."""
    from contracts.harness.live import is_loopback

    bases = {service: url for service, url in (("matrix", args.matrix), ("letta", args.letta)) if url}
    if not bases:
        print(f"contracts {name}: give --matrix and/or --letta", file=sys.stderr)
        return None
    remote = [url for url in bases.values() if not is_loopback(url)]
    if remote and not args.allow_remote:
        refused = ", ".join(remote)
        print(
            f"contracts {name}: {refused} is not on loopback; pass --allow-remote to use it anyway",
            file=sys.stderr,
        )
        return None
    return bases


def _http_failure(exc: BaseException) -> str:
    """One line for a server that could not be talked to (aiohttp's messages span lines)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientResponseError):
        text = f"{exc.request_info.real_url} answered {exc.status} {exc.message}"
    else:
        text = str(exc) or "no answer in time"
    return f"a server could not be talked to ({type(exc).__name__}): {' '.join(text.split())}"


def _live_command(
    args: argparse.Namespace, name: str, run: Callable[[dict[str, str]], tuple[str, Any, bool]]
) -> int:
    """What `check` and `differential` share: the servers asked for, a server that cannot be talked to as
    exit 2, the text on stdout, the JSON report; `run(bases)` gives (text, report data, whether it failed)."""
    import aiohttp

    bases = _live_bases(args, name)
    if bases is None:
        return 2
    try:
        text, data, failed = run(bases)
    except (OSError, aiohttp.ClientError) as exc:  # unreachable, or not speaking HTTP
        print(f"contracts {name}: {_http_failure(exc)}", file=sys.stderr)
        return 2
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return 1 if failed else 0


@command("check", _check_args)
def check_command(args: argparse.Namespace) -> int:
    """Run the scenario corpus against live servers; report drift from the contract per operation."""
    from contracts.harness.live import run_check

    def run(bases: dict[str, str]) -> tuple[str, Any, bool]:
        report = run_check(
            bases,
            letta_token=args.letta_token,
            matrix_admin_token=args.matrix_admin_token,
            llm_url=args.letta_llm,
        )
        return report.to_text(), report.to_json(), report.drifted

    return _live_command(args, "check", run)


@command("differential", _check_args)
def differential_command(args: argparse.Namespace) -> int:
    """Run the scenario corpus on a fresh mock and on live servers; exit 1 where they disagree."""
    import asyncio

    from contracts.harness.differential import run_differential

    def run(bases: dict[str, str]) -> tuple[str, Any, bool]:
        reports = [
            asyncio.run(
                run_differential(
                    service,
                    url,
                    letta_token=args.letta_token,
                    matrix_admin_token=args.matrix_admin_token,
                    llm_url=args.letta_llm,
                )
            )
            for service, url in bases.items()
        ]
        text = "\n".join(report.to_text() for report in reports)
        return text, [report.to_json() for report in reports], any(report.disagreements for report in reports)

    return _live_command(args, "differential", run)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="contracts", description=__doc__)
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
