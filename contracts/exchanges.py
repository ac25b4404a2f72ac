"""Recorded exchanges: one (request, response) pair per JSON line, checked against a spec.

A line looks like

    {"method": "POST", "url": "/_matrix/client/v3/login?x=1",
     "request": {"headers": {"Content-Type": "application/json"}, "body": {"type": "m.login.password"}},
     "response": {"status": 400, "headers": {"Content-Type": "application/json"},
                  "body": {"errcode": "M_INVALID_PARAM"}}}

`body` holds the parsed JSON; a body that is not JSON goes in `body_text` (UTF-8) or `body_base64`, so a
recording keeps malformed traffic exactly. A redacted recording (the default) masks secrets everywhere
(`contracts.redaction`): in the query, the headers, the JSON bodies, and in a body that is not JSON, which is
cut after the first word naming a secret. `url` may be absolute; only its path and query are checked. The
aiohttp hook (`contracts.adapters.aiohttp_hook`) writes this format; `contracts validate` reads it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from contracts.redaction import redact, redact_bytes, redact_headers, redact_query, redact_text
from contracts.validation import ContractValidator, ExchangeCheck, Violation, parse_json


@dataclass
class Exchange:
    method: str
    url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> str:
        return urlsplit(self.url).query

    def check(self, validator: ContractValidator) -> ExchangeCheck:
        return validator.check_exchange(
            method=self.method,
            path=self.path,
            query=self.query,
            request_headers=self.request_headers,
            request_body=self.request_body or None,
            status=self.status,
            response_headers=self.response_headers,
            response_body=self.response_body,
        )

    def to_json(self, *, redacted: bool = True) -> dict[str, Any]:
        parsed = urlsplit(self.url)
        query = redact_query(parsed.query) if redacted else parsed.query
        url = parsed.path + (f"?{query}" if query else "")
        return {
            "method": self.method,
            "url": url,
            "request": _side(self.request_headers, self.request_body, redacted),
            "response": {"status": self.status, **_side(self.response_headers, self.response_body, redacted)},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Exchange:
        request, response = data.get("request", {}), data.get("response", {})
        return cls(
            method=str(data["method"]).upper(),
            url=str(data["url"]),
            request_headers=dict(request.get("headers", {})),
            request_body=_body_bytes(request),
            status=int(response["status"]),
            response_headers=dict(response.get("headers", {})),
            response_body=_body_bytes(response),
        )


def _side(headers: Mapping[str, str], body: bytes, redacted: bool) -> dict[str, Any]:
    side: dict[str, Any] = {"headers": redact_headers(headers) if redacted else dict(headers)}
    if not body:
        return side
    try:
        # The validator's strict parser: json.loads would take a BOM, UTF-16 or NaN, and the body
        # re-encoded from it would hide that the original was malformed.
        document = parse_json(body)
    except ValueError:
        # Kept exactly, unless redacted: then cut after the first word naming a secret (see redact_text).
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            side["body_base64"] = base64.b64encode(redact_bytes(body) if redacted else body).decode()
        else:
            side["body_text"] = redact_text(text) if redacted else text
        return side
    side["body"] = redact(document) if redacted else document
    return side


def _body_bytes(side: Mapping[str, Any]) -> bytes:
    if "body" in side:
        return json.dumps(side["body"], ensure_ascii=False).encode("utf-8")
    if "body_text" in side:
        return str(side["body_text"]).encode("utf-8")
    if "body_base64" in side:
        return base64.b64decode(side["body_base64"])
    return b""


def read_exchanges(path: Path) -> Iterator[tuple[int, Exchange]]:
    """(line number, exchange) for every non-blank line; a line that is not an exchange raises ValueError."""
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, Exchange.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a recorded exchange ({exc})") from None


def write_exchange(fh: TextIO, exchange: Exchange) -> None:
    fh.write(json.dumps(exchange.to_json(), ensure_ascii=False) + "\n")
    fh.flush()


@dataclass
class FileReport:
    checked: int = 0
    failures: list[tuple[int, Exchange, list[Violation]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def validate_file(validator: ContractValidator, path: Path) -> FileReport:
    """Check every exchange of a recording; ValueError if it holds none (a recording that checks nothing
    usually means the hook never saw the traffic)."""
    report = FileReport()
    for number, exchange in read_exchanges(path):
        report.checked += 1
        found = exchange.check(validator).violations
        if found:
            report.failures.append((number, exchange, found))
    if not report.checked:
        raise ValueError(f"{path} holds no exchanges: nothing to check")
    return report
