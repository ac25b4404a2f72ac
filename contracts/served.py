"""Compare our contract for a service with the OpenAPI document that service serves (Letta's
`/openapi.json`), operation by operation.

Drift is what would make our contract wrong about the server: a parameter we document that it does not
take, a parameter whose required-ness differs, a response field we require that its schema does not have
(or has as optional without our saying why). What the server has beyond our subset — more parameters,
more fields, stricter required lists — is listed as notes: our contract documents what bridges use, and
deliberately requires less so that proxies and other versions still satisfy it.

Acknowledged differences are written into our spec: `x-not-in-server-openapi: <why>` on an operation or a
parameter, `x-stricter-than-server: {field: why}` on a schema that requires a field the server's schema
leaves optional."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.validation import ContractValidator, primary_media


@dataclass
class ServedFinding:
    operation: str
    drift: bool
    location: str
    detail: str

    def __str__(self) -> str:
        return f"{'DRIFT' if self.drift else 'note '} {self.operation}: {self.location}: {self.detail}"


@dataclass
class ServedReport:
    compared: list[str] = field(default_factory=list)
    findings: list[ServedFinding] = field(default_factory=list)

    @property
    def drift(self) -> list[ServedFinding]:
        return [finding for finding in self.findings if finding.drift]

    def to_text(self) -> str:
        lines = [f"{len(self.compared)} operation(s) compared with the served OpenAPI document"]
        lines += [f"  {finding}" for finding in self.findings]
        lines.append(f"{len(self.drift)} drift finding(s)")
        return "\n".join(lines)


class _Served:
    """The served document, `$ref`s followed on demand, OpenAPI 3.1 `anyOf [T, null]` seen through."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def deref(self, node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            target: Any = self.document
            for part in str(node["$ref"]).lstrip("#/").split("/"):
                target = target[part]
            node, seen = target, seen + 1
        return node

    def object_schema(self, schema: Any) -> Mapping[str, Any]:
        """The object schema a (possibly nullable, possibly array) schema describes items of."""
        schema = self.deref(schema)
        for union in ("anyOf", "oneOf"):
            if isinstance(schema, dict) and union in schema:
                options = [self.deref(s) for s in schema[union] if self.deref(s).get("type") != "null"]
                schema = options[0] if options else schema
        if isinstance(schema, dict) and schema.get("type") == "array":
            return self.object_schema(schema.get("items", {}))
        return schema if isinstance(schema, dict) else {}


def _ours_object(schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """Our response schema's object part (an array's items; a union's first branch, named)."""
    if "oneOf" in schema:
        branch = schema["oneOf"][0]
        return _ours_object(branch)[0], str(branch.get("title"))
    if schema.get("type") == "array":
        return _ours_object(schema.get("items", {}))[0], None
    return schema, None


def compare_served(ours: ContractValidator, served: Mapping[str, Any]) -> ServedReport:
    document = _Served(served)
    report = ServedReport()
    paths: Mapping[str, Any] = served.get("paths", {})
    for operation in ours.iter_operations():
        op_id = operation.operation_id
        exempt = operation.definition.get("x-not-in-server-openapi")
        served_op = paths.get(operation.path, {}).get(operation.method.lower())
        if served_op is None:
            if exempt:
                report.findings.append(
                    ServedFinding(
                        op_id, False, f"{operation.method} {operation.path}", f"not served: {exempt}"
                    )
                )
            else:
                report.findings.append(
                    ServedFinding(
                        op_id,
                        True,
                        f"{operation.method} {operation.path}",
                        "the server documents no such operation",
                    )
                )
            continue
        report.compared.append(op_id)
        # path-item parameters apply to every operation under the path; the operation's own override them
        declared = [*paths[operation.path].get("parameters", []), *served_op.get("parameters", [])]
        served_params = {(p["in"], p["name"]): p for p in (document.deref(p) for p in declared)}
        for (location, name), param in operation.params.items():
            raw = _raw_param(ours.spec["paths"][operation.path], operation.definition, location, name)
            theirs = served_params.get((location, name))
            where = f"{location} parameter '{name}'"
            if theirs is None:
                why = raw.get("x-not-in-server-openapi")
                report.findings.append(
                    ServedFinding(
                        op_id, not why, where, f"not taken by the server{f': {why}' if why else ''}"
                    )
                )
            elif bool(theirs.get("required", False)) != param.required:
                report.findings.append(
                    ServedFinding(
                        op_id,
                        True,
                        where,
                        f"required: ours {param.required}, server {bool(theirs.get('required'))}",
                    )
                )
        documented = {name for (location, name) in operation.params if location in ("query", "path")}
        extra = sorted(
            name
            for (location, name) in served_params
            if location in ("query", "path") and name not in documented
        )
        if extra:
            report.findings.append(
                ServedFinding(op_id, False, "parameters", f"the server also takes {', '.join(extra)}")
            )
        _compare_body(
            op_id, operation.responses.get("200"), served_op.get("responses", {}).get("200"), document, report
        )
    return report


def _raw_param(
    path_item: Mapping[str, Any], definition: Mapping[str, Any], location: str, name: str
) -> Mapping[str, Any]:
    """Our declaration of a parameter (its `x-` annotations): the operation's own, else the path item's."""
    declared = [*definition.get("parameters", []), *path_item.get("parameters", [])]
    return next((p for p in declared if (p.get("in"), p.get("name")) == (location, name)), {})


def _compare_body(op_id: str, ours: Any, theirs: Any, document: _Served, report: ServedReport) -> None:
    if ours is None or theirs is None or not ours.media_types:
        return
    our_schema, variant = _ours_object(primary_media(ours.media_types)[0])
    served_schema = document.object_schema(
        document.deref(theirs).get("content", {}).get("application/json", {}).get("schema")
    )
    if not served_schema:
        return
    where = "200 body" + (f" ({variant})" if variant else "")
    properties = served_schema.get("properties", {})
    served_required = set(served_schema.get("required", []))
    stricter: Mapping[str, str] = our_schema.get("x-stricter-than-server", {})
    for name in sorted(set(our_schema.get("required", []))):
        if name not in properties:
            report.findings.append(
                ServedFinding(
                    op_id, True, f"{where} /{name}", "we require it; the server's schema has no such field"
                )
            )
        elif name not in served_required:
            why = stricter.get(name)
            report.findings.append(
                ServedFinding(
                    op_id,
                    not why,
                    f"{where} /{name}",
                    f"we require it; the server's schema leaves it optional{f' ({why})' if why else ''}",
                )
            )
    looser = sorted(served_required - set(our_schema.get("required", [])))
    if looser:
        report.findings.append(
            ServedFinding(op_id, False, where, f"the server also requires {', '.join(looser)}")
        )
