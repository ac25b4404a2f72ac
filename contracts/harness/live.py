"""`contracts check`: the scenario corpus against live servers, every answer checked against our specs, a
verdict per operation — ok, undocumented status, schema mismatch or unexpected errcode — and where the
servers behaved otherwise than the corpus expects."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from contracts.harness.corpus import load_corpus
from contracts.harness.scenario import Outcome, Step, new_prefix, run_scenario
from contracts.loopback import is_loopback as is_loopback_host
from contracts.served import ServedReport, compare_served
from contracts.validation import ContractValidator, Violation, validator_for

RESULTS = ("ok", "undocumented status", "schema mismatch", "unexpected errcode")


def is_loopback(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def classify(violation: Violation) -> str:
    if violation.keyword == "status":
        return "undocumented status"
    if violation.pointer == "/errcode":
        return "unexpected errcode"
    return "schema mismatch"


@dataclass
class OperationVerdict:
    service: str
    operation: str
    steps: int = 0
    problems: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)

    @property
    def result(self) -> str:
        return next((kind for kind in RESULTS[1:] if kind in self.kinds), "ok")

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "operation": self.operation,
            "steps": self.steps,
            "result": self.result,
            "problems": self.problems,
        }


@dataclass
class CheckReport:
    bases: Mapping[str, str]
    prefix: str
    outcomes: list[Outcome]
    verdicts: list[OperationVerdict]
    served: ServedReport | None = None
    served_note: str | None = None

    @property
    def drift(self) -> list[OperationVerdict]:
        return [verdict for verdict in self.verdicts if verdict.result != "ok"]

    @property
    def drifted(self) -> bool:
        return bool(self.drift) or bool(self.served and self.served.drift)

    @property
    def unexpected(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.unexpected]

    @property
    def skipped(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.skipped]

    def to_json(self) -> dict[str, Any]:
        return {
            "servers": dict(self.bases),
            "prefix": self.prefix,
            "steps": len(self.outcomes),
            "drift": self.drifted,
            "operations": [verdict.to_json() for verdict in self.verdicts],
            "served_openapi": None
            if self.served is None
            else {"compared": self.served.compared, "findings": [vars(f) for f in self.served.findings]},
            "served_openapi_note": self.served_note,
            "unexpected_statuses": [
                {"step": o.step.name, "expected": o.step.expect, "got": o.status, "errcode": o.errcode}
                for o in self.unexpected
            ],
            "skipped": [{"step": o.step.name, "why": o.skipped} for o in self.skipped],
        }

    def to_text(self) -> str:
        lines = [
            f"contracts check: {', '.join(f'{s} {u}' for s, u in self.bases.items())} (prefix {self.prefix})"
        ]
        width = max((len(v.operation) for v in self.verdicts), default=10)
        lines.append(f"  {'service':<7} {'operation':<{width}} steps  result")
        for verdict in self.verdicts:
            lines.append(
                f"  {verdict.service:<7} {verdict.operation:<{width}} {verdict.steps:>5}  {verdict.result}"
            )
            lines += [f"      {problem}" for problem in verdict.problems[:5]]
        for outcome in self.unexpected:
            lines.append(
                f"  note: '{outcome.step.name}' answered {outcome.status} {outcome.errcode or ''}".rstrip()
                + f" where the corpus expects {outcome.step.expect}"
            )
        for outcome in self.skipped:
            lines.append(f"  skipped: '{outcome.step.name}' ({outcome.skipped})")
        if self.served_note:
            lines.append(f"  note: {self.served_note}")
        if self.served is not None:
            lines.append("  Letta's own /openapi.json against our contract:")
            lines += [f"    {line}" for line in self.served.to_text().splitlines()]
        drift = self.drift
        served = len(self.served.drift) if self.served else 0
        lines.append(
            f"drift: {len(drift)} operation(s), {served} served-document finding(s)"
            if self.drifted
            else "drift: none"
        )
        return "\n".join(lines)


def verdicts(outcomes: Sequence[Outcome]) -> list[OperationVerdict]:
    found: dict[tuple[str, str], OperationVerdict] = {}
    for outcome in outcomes:
        if outcome.skipped or outcome.operation is None:
            continue
        verdict = found.setdefault(
            (outcome.step.service, outcome.operation),
            OperationVerdict(outcome.step.service, outcome.operation),
        )
        verdict.steps += 1
        for violation in outcome.violations:
            if violation.side != "response":
                continue  # the corpus sends invalid requests on purpose
            verdict.kinds.add(classify(violation))
            verdict.problems.append(f"'{outcome.step.name}': {violation.message}")
    return sorted(found.values(), key=lambda v: (v.service, v.operation))


async def check(
    bases: Mapping[str, str],
    *,
    letta_token: str | None = None,
    matrix_admin_token: str | None = None,
    llm_url: str | None = None,
    prefix: str | None = None,
    steps: Sequence[Step] | None = None,
    validators: Mapping[str, ContractValidator] | None = None,
) -> CheckReport:
    prefix = prefix or new_prefix()
    variables = {
        "prefix": prefix,
        "prefix_upper": prefix.upper(),
        "bogus_token": "syt_never_issued_by_this_server",
        "letta_token": letta_token or "",
        "admin_token": matrix_admin_token or "",
        # An OpenAI-compatible endpoint the Letta server can reach, for the agents that chat.
        "llm_url": llm_url or "",
    }
    corpus = list(steps) if steps is not None else [*load_corpus("matrix"), *load_corpus("letta")]
    outcomes = await run_scenario(
        [s for s in corpus if s.service in bases], bases, variables, validators=validators
    )
    served, served_note = None, None
    if "letta" in bases and letta_token:
        # The document is an extra: a proxy that refuses or mangles it must not cost the whole report.
        try:
            document = await fetch_openapi(bases["letta"], letta_token)
        except aiohttp.ClientResponseError as exc:
            document, why = None, f"answers {exc.status} {exc.message}".rstrip()
        except ValueError as exc:
            document, why = None, f"serves a /openapi.json that is not a JSON object ({exc})"
        else:
            why = "serves no /openapi.json"
        if document is None:
            served_note = f"{bases['letta']} {why}; the served-document diff was not run"
        else:
            served = compare_served((validators or {}).get("letta") or validator_for("letta"), document)
    return CheckReport(bases, prefix, outcomes, verdicts(outcomes), served, served_note)


async def fetch_openapi(base: str, token: str, *, request_timeout: float = 30.0) -> dict[str, Any] | None:
    """The OpenAPI document a Letta server serves (it wants the bearer token for it, too); None if it
    serves none, as our mock and proxies in front of Letta do. Another error status raises
    aiohttp.ClientResponseError; a body that is not a JSON object, ValueError."""
    url = f"{base.rstrip('/')}/openapi.json"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_timeout)) as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        if answer.status == 404:
            return None
        answer.raise_for_status()
        document = await answer.json(content_type=None)
        if not isinstance(document, dict):
            raise ValueError(f"a JSON {type(document).__name__}")
        return document


def run_check(bases: Mapping[str, str], **options: Any) -> CheckReport:
    return asyncio.run(check(bases, **options))
