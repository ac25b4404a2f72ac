"""Synapse's words: `{"errcode", "error"}` bodies, its order of checks, its path quirks."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from contracts.validation import Violation
from mockgen.http.dialects.base import (
    Credentials,
    Dialect,
    Reply,
    bearer,
    request_order,
    unencodable_violation,
)
from mockgen.store.errors import MatrixError
from mockgen.store.matrix.errcodes import (
    M_BAD_JSON,
    M_INVALID_PARAM,
    M_LIMIT_EXCEEDED,
    M_MISSING_PARAM,
    M_MISSING_TOKEN,
    M_NOT_JSON,
    M_UNKNOWN,
    M_UNRECOGNIZED,
)
from mockgen.world import World

_STATE_TRAILING_SLASH = re.compile(r"^(/_matrix/client/[^/]+/rooms/[^/]+/state/[^/]+)/$")


class MatrixDialect(Dialect):
    service = "matrix"

    def normalize_path(self, path: str) -> str:
        # Synapse reads `/state/{type}/` (trailing slash) as the empty state key.
        matched = _STATE_TRAILING_SLASH.match(path)
        return matched.group(1) if matched else path

    @staticmethod
    def error(status: int, errcode: str, error: str, **extra: Any) -> Reply:
        return Reply(status, {"errcode": errcode, "error": error, **extra})

    def not_found(self) -> Reply:
        return self.error(404, M_UNRECOGNIZED, "Unrecognized request")

    def wrong_method(self, allowed: Sequence[str]) -> Reply:
        return self.error(405, M_UNRECOGNIZED, "Unrecognized request")

    def internal_error(self) -> Reply:
        return self.error(500, M_UNKNOWN, "Internal server error")

    def invalid_request(self, violations: Sequence[Violation]) -> Reply:
        if unencodable_violation(violations) is not None:
            # What Synapse answers for the same character sent as raw bytes; the escaped form makes it
            # answer 500 or nothing at all (specs/matrix.yaml, x-lone-surrogates).
            return self.error(400, M_NOT_JSON, "Content not JSON.")
        first = sorted(violations, key=request_order)[0]
        if first.location.startswith("path"):
            return self.not_found()
        if first.keyword == "not-json":
            return self.error(400, M_NOT_JSON, "Content not JSON.")
        if first.location == "request body" and first.pointer == "" and first.keyword == "type":
            return self.error(400, M_BAD_JSON, "Content must be a JSON object.")
        if first.location.startswith(("query", "header")):
            default = M_MISSING_PARAM if first.keyword == "required" else M_INVALID_PARAM
            return self.error(400, first.errcode or default, first.message)
        default = M_MISSING_PARAM if first.keyword == "required" else M_BAD_JSON
        return self.error(400, first.errcode or default, first.message)

    def authenticate(
        self,
        world: World,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        required: bool,
        *,
        optional: bool = False,
    ) -> Credentials | Reply:
        token, well_formed = bearer(headers, case_sensitive=True)
        if not well_formed:
            if not (required or optional):
                # Synapse never reads the header on login, login flows, register or register/available.
                return Credentials()
            return self.error(401, M_MISSING_TOKEN, "Invalid Authorization header.")
        if query.get("access_token"):
            if token is not None:
                return self.error(
                    401, M_MISSING_TOKEN, "Mixing Authorization headers and access_token query parameters."
                )
            token = query["access_token"][0]
        if token is None:
            if required:
                return self.error(401, M_MISSING_TOKEN, "Missing access token")
            return Credentials()
        if not (required or optional):
            # Synapse does not look at tokens on public endpoints (register refuses one being sent at all);
            # on endpoints with optional auth (/versions, profile reads) it checks one that is sent.
            return Credentials(token=token)
        try:
            user, device_id = world.matrix.authenticate(token)
        except MatrixError as exc:
            return self.error(exc.status, exc.errcode, exc.error, **exc.extra)
        return Credentials(user, device_id, token)

    def rate_limited(self, retry_after_ms: int) -> Reply:
        reply = self.error(429, M_LIMIT_EXCEEDED, "Too Many Requests", retry_after_ms=retry_after_ms)
        reply.headers["Retry-After"] = str(-(-retry_after_ms // 1000))
        return reply
