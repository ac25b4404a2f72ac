"""Differential runs: the same scenario corpus on the mock and on a real server, compared step by step —
status, errcode, which of the fields the contract requires for that answer came back, and what the step's
`compare` selectors pick out of it (ids and tokens masked: `projection`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from contracts.harness.corpus import load_corpus
from contracts.harness.live import check
from contracts.harness.scenario import Outcome, Step
from contracts.validation import primary_media, validator_for
from mockgen.server import MockServers
from mockgen.world import DEFAULT_LETTA_TOKEN, World


@dataclass(frozen=True)
class Disagreement:
    step: str
    aspect: str  # status | errcode | detail | fields | content (what `compare` selectors picked)
    mock: Any
    real: Any

    def __str__(self) -> str:
        return f"'{self.step}': {self.aspect} differs (mock {self.mock!r}, real {self.real!r})"


def required_fields(outcome: Outcome) -> tuple[str, ...]:
    """The fields the contract requires of this answer, as far as they came back."""
    if outcome.operation is None or outcome.status is None or not isinstance(outcome.body, dict):
        return ()
    operation = validator_for(outcome.step.service).operations[outcome.operation]
    spec = operation.response(outcome.status)
    if spec is None or not spec.media_types:
        return ()
    schema = primary_media(spec.media_types)[0]
    return tuple(sorted(name for name in schema.get("required", []) if name in outcome.body))


# What differs between any two runs by design, masked before Letta's `detail`s are compared: ids (generated
# on each side), the run's prefix, and the timestamps Letta prints into its PATCH 404.
_VOLATILE = (
    (
        re.compile(r"\b(agent|message|user|org)-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"),
        r"\1-<id>",
    ),
    (re.compile(r"\bcc[0-9a-f]{10}"), "<prefix>"),
    (re.compile(r"datetime\.datetime\([^)]*\)"), "datetime.datetime(<when>)"),
)


def letta_detail(outcome: Outcome) -> Any:
    """A Letta error as compared: a string `detail` with its volatile parts masked, or a 422's items as
    (type, loc, msg, keys) — the parts a client reads; `input` echoes what each side was sent."""
    if not isinstance(outcome.body, dict) or "detail" not in outcome.body:
        return None
    detail = outcome.body["detail"]
    if isinstance(detail, list):
        return [
            (item.get("type"), item.get("loc"), item.get("msg"), sorted(item))
            for item in detail
            if isinstance(item, dict)
        ]
    text = str(detail)
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def compare(mock: Sequence[Outcome], real: Sequence[Outcome]) -> list[Disagreement]:
    """Step-by-step differences; the runs must be of the same corpus."""
    found: list[Disagreement] = []
    for ours, theirs in zip(mock, real, strict=True):
        name = ours.step.name
        if ours.skipped or theirs.skipped:
            continue
        if ours.status != theirs.status:
            found.append(Disagreement(name, "status", ours.status, theirs.status))
        elif ours.errcode != theirs.errcode:
            found.append(Disagreement(name, "errcode", ours.errcode, theirs.errcode))
        elif ours.step.service == "letta" and (detail := letta_detail(ours)) != (
            their_detail := letta_detail(theirs)
        ):
            found.append(Disagreement(name, "detail", detail, their_detail))
        elif (fields := required_fields(ours)) != (their_fields := required_fields(theirs)):
            found.append(Disagreement(name, "fields", fields, their_fields))
        elif differing := [
            (selector, mine, real)
            for (selector, mine), (_, real) in zip(ours.projections, theirs.projections, strict=True)
            if mine != real
        ]:
            found.append(
                Disagreement(
                    name, "content", {s: m for s, m, _ in differing}, {s: r for s, _, r in differing}
                )
            )
    return found


def compared_steps(mock: Sequence[Outcome], real: Sequence[Outcome]) -> int:
    """The steps neither side skipped."""
    return sum(1 for a, b in zip(mock, real, strict=True) if not (a.skipped or b.skipped))


def _share_agreeing(disagreements: int, compared: int) -> float:
    return 1.0 - disagreements / compared if compared else 1.0


def agreement(mock: Sequence[Outcome], real: Sequence[Outcome]) -> float:
    return _share_agreeing(len(compare(mock, real)), compared_steps(mock, real))


@dataclass
class DifferentialReport:
    service: str
    mock: list[Outcome]
    real: list[Outcome]
    disagreements: list[Disagreement]

    @property
    def compared(self) -> int:
        return compared_steps(self.mock, self.real)

    @property
    def agreement(self) -> float:
        return _share_agreeing(len(self.disagreements), self.compared)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "compared": self.compared,
            "agreement": round(self.agreement, 4),
            "disagreements": [vars(disagreement) for disagreement in self.disagreements],
        }

    def to_text(self) -> str:
        lines = [
            f"differential {self.service}: {self.compared} steps compared, "
            f"{self.compared - len(self.disagreements)} agree ({self.agreement:.1%})"
        ]
        lines += [f"  {disagreement}" for disagreement in self.disagreements]
        skipped = Counter(
            mock.skipped or real.skipped
            for mock, real in zip(self.mock, self.real, strict=True)
            if mock.skipped or real.skipped
        )
        lines += [f"  note: {count} step(s) not compared: {why}" for why, count in sorted(skipped.items())]
        return "\n".join(lines)


def corpus() -> list[Step]:
    """The scenario corpus, where a Letta step that sends the token needs it: without one it is skipped,
    rather than sent bare to the real server while the mock gets its own token."""
    return [
        *load_corpus("matrix"),
        *(
            replace(step, needs=(*step.needs, "letta_token")) if step.token == "letta_token" else step
            for step in load_corpus("letta")
        ),
    ]


async def run_differential(
    service: str, real_base: str, *, letta_token: str | None = None, matrix_admin_token: str | None = None
) -> DifferentialReport:
    """The corpus of `service` on a fresh in-process mock and on the real server at `real_base`. Each side
    gets its own credentials, or none on both: steps that need a credential not given are skipped on both."""
    steps = corpus()
    servers = MockServers(World())
    servers.start()
    try:
        mock_base = getattr(servers.endpoints, service)
        mock_admin = servers.world.matrix.login(user="admin", password="admin_password")["access_token"]
        on_mock = await check(
            {service: mock_base},
            letta_token=DEFAULT_LETTA_TOKEN if letta_token else None,
            matrix_admin_token=mock_admin if matrix_admin_token else None,
            steps=steps,
        )
    finally:
        servers.stop()
    on_real = await check(
        {service: real_base}, letta_token=letta_token, matrix_admin_token=matrix_admin_token, steps=steps
    )
    return DifferentialReport(
        service, on_mock.outcomes, on_real.outcomes, compare(on_mock.outcomes, on_real.outcomes)
    )
