"""Compare our Matrix contract with the upstream Matrix specification's OpenAPI data.

Two promises are checked: every operation of ours exists upstream (same method, a matching path template —
upstream's `{keyName}` matches our `displayname`, and its `{stateKey}` may be empty), and every response
field upstream requires is required by ours too, status by status. The Synapse admin API is not part of
the Client-Server specification and is reported as such, not as drift."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contracts.validation import (
    HTTP_METHODS,
    ContractValidator,
    Operation,
    fill_template,
    pointer_part,
    template_regex,
)

NOT_CLIENT_SERVER = ("/_synapse/",)


@dataclass(frozen=True)
class UpstreamOperation:
    operation_id: str
    method: str
    path: str  # full template, e.g. /_matrix/client/v3/rooms/{roomId}/join
    file: Path
    responses: Mapping[str, Any]  # as written: `$ref`s not followed yet
    regex: re.Pattern[str]


@dataclass
class Finding:
    operation: str
    # missing-upstream | required-field | wrong-upstream-operation | unreadable-upstream | not-client-server
    kind: str
    location: str
    detail: str

    @property
    def drift(self) -> bool:
        return self.kind != "not-client-server"


@dataclass
class UpstreamReport:
    checked: int = 0
    matched: dict[str, str] = field(default_factory=dict)  # ours -> upstream operationId
    findings: list[Finding] = field(default_factory=list)

    @property
    def drift(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.drift]


class _Documents:
    """The upstream YAML files, loaded once each, with `$ref`s followed on demand (file-relative and
    internal). Only what a comparison touches is resolved: the data set may hold refs into files it does
    not ship (the identity API), which must not stop the Client-Server comparison."""

    def __init__(self) -> None:
        self._cache: dict[Path, Any] = {}

    def load(self, path: Path) -> Any:
        path = path.resolve()
        if path not in self._cache:
            with path.open(encoding="utf-8") as fh:
                self._cache[path] = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return self._cache[path]

    def resolve(self, node: Any, base: Path, depth: int = 0) -> Any:
        if depth > 50:
            return {}
        if isinstance(node, list):
            return [self.resolve(item, base, depth + 1) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            reference = str(node["$ref"])
            file_part, _, pointer = reference.partition("#")
            target_file = (base.parent / file_part).resolve() if file_part else base
            target = self.load(target_file)
            for part in [p for p in pointer.split("/") if p]:
                target = target[pointer_part(part)]
            return self.resolve(target, target_file, depth + 1)
        return {key: self.resolve(value, base, depth + 1) for key, value in node.items()}

    def body_schema(self, response: Any, base: Path) -> Any:
        """A response's JSON body schema, resolved (its examples are left alone)."""
        if isinstance(response, dict) and "$ref" in response:
            response = self.resolve({"$ref": response["$ref"]}, base)
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        return self.resolve(schema, base)


def upstream_operations(spec_dir: Path, documents: _Documents) -> Iterator[UpstreamOperation]:
    """Every operation in the Client-Server API data under `spec_dir` (the matrix-spec repository root, or
    its `data/api/client-server` folder)."""
    folder = spec_dir / "data" / "api" / "client-server" if (spec_dir / "data").is_dir() else spec_dir
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no Client-Server API data under {spec_dir}")
    for file in files:
        document = documents.load(file)
        servers = document.get("servers") or [{}]
        base = servers[0].get("variables", {}).get("basePath", {}).get("default", "/_matrix/client/v3")
        for path, item in (document.get("paths") or {}).items():
            for method in HTTP_METHODS:
                if method in item:
                    # Upstream sometimes pads a path with a space to give one path two path items.
                    full = base.rstrip("/") + path.strip()
                    yield UpstreamOperation(
                        operation_id=str(item[method].get("operationId")),
                        method=method.upper(),
                        path=full,
                        file=file,
                        responses=item[method].get("responses", {}),
                        regex=template_regex(full, empty_values=True),
                    )


def _sample(template: str) -> str:
    """Our template with every parameter replaced by a stand-in value, the version by v3."""
    counter = iter(range(1, 100))
    return fill_template(template, lambda name: "v3" if name == "version" else f"P{next(counter)}")


def _required(schema: Any) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    found = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        found |= _required(part)
    return found


def _find(operation: Operation, upstream: list[UpstreamOperation], expected: str) -> UpstreamOperation | None:
    sample = _sample(operation.path)
    candidates = [
        op
        for op in upstream
        if op.method == operation.method and (op.regex.match(sample) or op.regex.match(sample + "/"))
    ]
    # The most specific template (fewest parameters) is the one meant; between equals, the expected name.
    return min(candidates, key=lambda op: (op.path.count("{"), op.operation_id != expected), default=None)


def compare(ours: ContractValidator, spec_dir: Path) -> UpstreamReport:
    documents = _Documents()
    upstream = list(upstream_operations(spec_dir, documents))
    report = UpstreamReport()
    for operation in ours.iter_operations():
        report.checked += 1
        op_id = operation.operation_id
        if operation.path.startswith(NOT_CLIENT_SERVER):
            report.findings.append(
                Finding(
                    op_id,
                    "not-client-server",
                    operation.path,
                    "Synapse admin API, not in the Client-Server spec",
                )
            )
            continue
        expected = str(operation.definition.get("x-upstream-operation", op_id))
        match = _find(operation, upstream, expected)
        if match is None:
            report.findings.append(
                Finding(
                    op_id,
                    "missing-upstream",
                    f"{operation.method} {operation.path}",
                    "no upstream operation has this method and path",
                )
            )
            continue
        report.matched[op_id] = match.operation_id
        if match.operation_id != expected:
            report.findings.append(
                Finding(
                    op_id,
                    "wrong-upstream-operation",
                    f"{operation.method} {operation.path}",
                    f"upstream calls it {match.operation_id}, we expect {expected}",
                )
            )
        for status, written in match.responses.items():
            try:
                upstream_required = _required(documents.body_schema(written, match.file))
            except (OSError, KeyError) as exc:
                report.findings.append(
                    Finding(
                        op_id, "unreadable-upstream", f"{status} response", f"upstream $ref not found: {exc}"
                    )
                )
                continue
            spec = operation.responses.get(str(status))
            if not upstream_required or spec is None or not spec.media_types:
                continue
            ours_required = _required(spec.media_types.get("application/json", ({}, None))[0])
            for name in sorted(upstream_required - ours_required):
                report.findings.append(
                    Finding(
                        op_id,
                        "required-field",
                        f"{status} response body /{name}",
                        f"required upstream ({match.file.name}), optional or absent in ours",
                    )
                )
    return report


def report_text(report: UpstreamReport) -> str:
    lines = [
        f"{report.checked} operations checked against the upstream Matrix spec, {len(report.matched)} matched"
    ]
    for finding in report.findings:
        marker = "DRIFT" if finding.drift else "note "
        lines.append(
            f"  {marker} {finding.operation}: {finding.kind} at {finding.location}: {finding.detail}"
        )
    lines.append(f"{len(report.drift)} drift finding(s)")
    return "\n".join(lines)
