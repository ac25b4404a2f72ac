"""Differential runs: the same scenario corpus on the mock and on a real server, compared step by step —
status, errcode, which of the fields the contract requires for that answer came back, and what the step's
`compare` selectors pick out of it (ids and tokens masked: `projection`); for Letta's chat turns also the
message types in order (a stream's events with its framing, a LettaResponse's messages, a history page)
the rules their ids and dates follow, and what they say where every run says the same
(`contracts.harness.sse`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from contracts.harness.corpus import load_corpus
from contracts.harness.live import check
from contracts.harness.scenario import Outcome, Step
from contracts.harness.sse import broken_rules, response_summary, said, summary
from contracts.validation import primary_media, validator_for
from mockgen.server import MockServers
from mockgen.world import DEFAULT_LETTA_TOKEN, MockConfig, World


@dataclass(frozen=True)
class Disagreement:
    step: str
    aspect: (
        str  # status | errcode | detail | messages | rules | said | fields | content (`compare` selectors)
    )
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


def letta_messages(outcome: Outcome) -> Any:
    """A chat turn's answer as compared: a stream's content type and events (`sse.summary`), a
    LettaResponse's messages, stop reason and usage, or a history page's message types; None otherwise."""
    if outcome.framing is not None:
        return ["not a stream of data: events"]
    if outcome.events is not None:
        return [(outcome.content_type or "").replace(" ", "").lower(), *summary(outcome.events)]
    body = outcome.body
    if isinstance(body, dict) and "messages" in body and "stop_reason" in body:
        return response_summary(body)
    if (
        isinstance(body, list)
        and body
        and all(isinstance(item, dict) and "message_type" in item for item in body)
    ):
        return [item["message_type"] for item in body]
    return None


def letta_rules(outcome: Outcome) -> list[str]:
    """The id and date rules (`sse.broken_rules`) the messages of the answer break."""
    if outcome.events is not None:
        return broken_rules([event.data for event in outcome.events])
    body = outcome.body
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        return broken_rules(body["messages"])
    return broken_rules(body) if _message_list(body) else []


def _message_list(body: Any) -> bool:
    """A history page (not a list of agents, whose ids follow rules of their own)."""
    return isinstance(body, list) and all(isinstance(item, dict) and "message_type" in item for item in body)


def letta_said(outcome: Outcome) -> list[Any]:
    """What a chat turn's answer or a history page says (`sse.said`): what the mock's default LLM and the
    project's fake LLM make the same."""
    if outcome.events is not None:
        return said([event.data for event in outcome.events])
    body = outcome.body
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        return said(body["messages"])
    return said(body, history=True) if _message_list(body) else []


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
        elif ours.step.service == "letta" and (messages := letta_messages(ours)) != (
            their_messages := letta_messages(theirs)
        ):
            found.append(Disagreement(name, "messages", messages, their_messages))
        elif ours.step.service == "letta" and (rules := letta_rules(ours)) != (
            their_rules := letta_rules(theirs)
        ):
            found.append(Disagreement(name, "rules", rules, their_rules))
        elif ours.step.service == "letta" and (words := letta_said(ours)) != (
            their_words := letta_said(theirs)
        ):
            found.append(Disagreement(name, "said", words, their_words))
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
    service: str,
    real_base: str,
    *,
    letta_token: str | None = None,
    matrix_admin_token: str | None = None,
    llm_url: str | None = None,
    letta_version: str = "0.11.7",
) -> DifferentialReport:
    """The corpus of `service` on a fresh in-process mock and on the real server at `real_base`. Each side
    gets its own credentials, or none on both: steps that need a credential not given are skipped on both.
    `llm_url`, an OpenAI-compatible endpoint the real Letta can reach (`live.fakellm`), is what the agents
    that chat are created with, on both sides (the mock never calls it); without it their steps are skipped
    on both. `letta_version`: which Letta the mock answers as (the real server's release)."""
    steps = corpus()
    servers = MockServers(World(MockConfig(letta_version=letta_version)))
    servers.start()
    try:
        mock_base = getattr(servers.endpoints, service)
        mock_admin = servers.world.matrix.login(user="admin", password="admin_password")["access_token"]
        on_mock = await check(
            {service: mock_base},
            letta_token=DEFAULT_LETTA_TOKEN if letta_token else None,
            matrix_admin_token=mock_admin if matrix_admin_token else None,
            llm_url=llm_url,
            steps=steps,
        )
    finally:
        servers.stop()
    on_real = await check(
        {service: real_base},
        letta_token=letta_token,
        matrix_admin_token=matrix_admin_token,
        llm_url=llm_url,
        steps=steps,
    )
    return DifferentialReport(
        service, on_mock.outcomes, on_real.outcomes, compare(on_mock.outcomes, on_real.outcomes)
    )
