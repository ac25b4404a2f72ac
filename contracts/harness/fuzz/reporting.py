"""`contracts fuzz`: run, print a summary a person can read, write the reports, decide the exit code."""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
from pathlib import Path
from typing import Any

from contracts.coverage import describe_cell
from contracts.databases import open_database
from contracts.harness.fuzz.parallel import fuzz_parallel
from contracts.harness.fuzz.plan import Plan, load_plan, save_plan
from contracts.harness.fuzz.runner import PLAN_FILE, FuzzResult, fuzz
from contracts.harness.fuzz.target import load_target
from mockgen.world import MockConfig


def mock_config(args: argparse.Namespace) -> MockConfig:
    """The mocks' configuration the options ask for."""
    return MockConfig(server_name=args.server_name, letta_token=args.letta_token or None)


def config_options(args: argparse.Namespace) -> str:
    """The configuration options given, as a replay must repeat them."""
    defaults = MockConfig()
    given = []
    if args.server_name != defaults.server_name:
        given.append(f"--server-name {shlex.quote(args.server_name)}")
    if (args.letta_token or None) != defaults.letta_token:
        given.append(f"--letta-token {shlex.quote(args.letta_token)}")
    return " ".join(given)


def summary(result: FuzzResult, threshold: float, options: str = "") -> dict[str, Any]:
    failure = result.failure
    return {
        "target": result.target,
        "examples": result.examples,
        "sweep_examples": result.swept,
        "seconds": round(result.seconds, 2),
        "examples_per_second": round(result.examples_per_second, 1),
        "seed": result.seed,
        "operations": result.operations,
        "coverage": {
            "cells": len(result.coverage.cells),
            "exercised": result.coverage.exercised,
            "ratio": result.coverage.ratio,
        },
        "threshold": threshold,
        "failure": None
        if failure is None
        else {
            "problems": failure.problems,
            "plan": failure.plan.describe(),
            "replay": failure.replay_command(result.target, options),
            "calibration": failure.calibration,
            "plan_file": str(failure.plan_file),
            "workdir": str(failure.workdir),
        },
    }


def failure_text(result: FuzzResult, options: str = "") -> str:
    failure = result.failure
    if failure is None:
        return ""
    lines = ["FAILED in the calibration (two runs without faults, before any example)" if failure.calibration
             else "FAILED"]  # fmt: skip
    for name, problems in failure.problems.items():
        lines.append(f"  invariant {name}:")
        lines += [f"    {problem}" for problem in problems[:10]]
        if len(problems) > 10:
            lines.append(f"    ... and {len(problems) - 10} more")
    if result.replayed:
        lines.append("  the replayed plan:")
    else:
        lines.append("  the calibration's plan:" if failure.calibration else "  minimal plan (shrunk):")
    lines += [f"    {line}" for line in failure.plan.describe().splitlines()]
    if result.seed is not None:
        lines.append(f"  seed: {result.seed}")
    command = failure.replay_command(result.target, options)
    if command:
        lines.append(f"  replay: {command}")
    lines.append(f"  the target's files and log (target.log) from that example: {failure.workdir}")
    return "\n".join(lines)


def _what(args: argparse.Namespace) -> str:
    """What the run will do, as the options say (a replay wins over the sweep options, as in `fuzz_in`)."""
    if args.replay:
        return "replaying one example"
    if args.sweep_only:
        return "the sweep only"
    random_examples = f"{args.examples} random example{'s' * (args.examples != 1)}"
    return random_examples if args.no_sweep else f"the sweep and {random_examples}"


def _usage_error(args: argparse.Namespace) -> str | None:
    if args.seed is not None and args.database:
        return "--seed and --database exclude each other (a seeded run ignores the database)"
    if args.replay and (args.seed is not None or args.database):
        return "--replay runs the plan in its file alone: it takes no --seed and no --database"
    if args.examples < 0:
        return f"--examples must be 0 or more, not {args.examples}"
    return None


def run_fuzz_command(args: argparse.Namespace) -> int:
    # as uvicorn does with --app-dir: a target in the user's project imports without being installed
    sys.path.insert(0, str(args.app_dir.resolve()))
    try:
        target = load_target(args.target)
        replay: Plan | None = load_plan(args.replay) if args.replay else None
    except ImportError as exc:
        print(f"contracts fuzz: {exc}{_import_hint(exc, args)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"contracts fuzz: {exc}", file=sys.stderr)
        return 2
    problem = _usage_error(args)
    if problem:
        print(f"contracts fuzz: {problem}", file=sys.stderr)
        return 2
    # Without a database every run is seeded, so a clean run can be repeated too, not only a failing one.
    seed = args.seed if args.seed is not None or args.database or replay else random.randrange(2**32)
    workers = 1 if replay or args.sweep_only else max(1, args.workers)
    if replay:
        source = f"plan {args.replay}"
    else:
        source = f"seed {seed}" if seed is not None else f"example database {args.database}"
    print(f"contracts fuzz: {target.name}, {_what(args)}, {workers} worker(s), {source}")
    try:
        if workers > 1:
            result = fuzz_parallel(
                target.name, examples=args.examples, workers=workers, seed=seed, time_bound=args.time_bound,
                progress=not args.quiet, sweep=not args.no_sweep,
                database=str(args.database) if args.database else None, config=mock_config(args),
                virtual_time=not args.real_time,
            )  # fmt: skip
        else:
            result = fuzz(
                target,
                examples=args.examples,
                seed=seed,
                replay=replay,
                database=open_database(args.database) if args.database else None,
                time_bound=args.time_bound,
                virtual_time=not args.real_time,
                progress=not args.quiet,
                sweep=not args.no_sweep,
                sweep_only=args.sweep_only,
                config=mock_config(args),
            )
    except ValueError as exc:  # the options or the replayed plan do not make a run
        print(f"contracts fuzz: {exc}", file=sys.stderr)
        return 2
    return _report(result, args)


def _import_hint(exc: ImportError, args: argparse.Namespace) -> str:
    """Where the target's own module was looked for, when that is what is missing."""
    top = args.target.partition(":")[0].split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or exc.name != top:
        return ""
    return (
        f" (looked in {args.app_dir.resolve()} and the installed packages: run from the directory that "
        f"holds {top}, or name it with --app-dir DIR)"
    )


def _report(result: FuzzResult, args: argparse.Namespace) -> int:
    """Print the outcome, write the reports asked for; the exit code."""
    coverage = result.coverage
    options = config_options(args)
    if result.failure is not None and result.failure.calibration:
        print(f"  the calibration failed after {result.seconds:.1f} s: no example ran")
    elif result.replayed:
        print(f"  the replayed example ran in {result.seconds:.1f} s")
    else:
        print(
            f"  {result.examples} examples ({result.swept} of them the sweep) in {result.seconds:.1f} s"
            f" ({result.examples_per_second:.1f}/s)"
        )
        print(
            f"  coverage: {coverage.exercised}/{len(coverage.cells)} cells of {len(result.operations)}"
            f" operations ({coverage.ratio:.1%}; threshold {args.threshold:.0%})"
        )
    if result.failure is not None:
        # The replay command points at the plan beside the report, else at the file just replayed.
        if args.report:
            result.failure.plan_file = save_plan(result.failure.plan, args.report / PLAN_FILE)
        elif result.replayed:
            result.failure.plan_file = args.replay
    if args.report:
        markdown, _ = coverage.write(args.report)
        Path(args.report, "fuzz.json").write_text(
            json.dumps(summary(result, args.threshold, options), indent=2), encoding="utf-8"
        )
        print(f"  report: {markdown}")
    code = 0
    if result.failure is not None:
        print(failure_text(result, options))
        if args.report:
            Path(args.report, "failure.txt").write_text(
                failure_text(result, options) + "\n", encoding="utf-8"
            )
        code = 1
    elif result.replayed:
        print("  the replayed example passed")
    else:
        print("  invariants: all held")
    calibration = result.failure is not None and result.failure.calibration
    if not result.replayed and not calibration and coverage.ratio < args.threshold:
        if not coverage.cells:
            print("  nothing to cover: the target called no documented operation")
        else:
            print("  coverage below the threshold; never exercised:")
        for cell in coverage.missing():
            print(f"    {describe_cell(cell)}")
        code = 1
    return code
