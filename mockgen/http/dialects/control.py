"""The control API's words (`{"error"}`), and its guard against calls a browser page could make."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from starlette.types import Scope

from contracts.validation import JSON_MEDIA_TYPE, Violation
from mockgen.http.dialects.base import (
    Credentials,
    Dialect,
    Reply,
    own_origins,
)
from mockgen.world import World

# The control API's credential, when the mock has one (`MockConfig.control_token`): a header of its own, so
# that a client can send it beside the Authorization header both services use for their own tokens.
CONTROL_TOKEN_HEADER = "X-Mock-Control-Token"
# Control calls that change the world. A browser sends a cross-origin POST without asking first (no
# preflight) only with a "simple" Content-Type (text/plain, a form); requiring JSON forces the preflight,
# which the mock never grants.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ControlDialect(Dialect):
    service = "control"

    @staticmethod
    def error(status: int, message: str) -> Reply:
        return Reply(status, {"error": message})

    def not_found(self) -> Reply:
        return self.error(404, "no such control route")

    def wrong_method(self, allowed: Sequence[str]) -> Reply:
        return self.error(405, f"method not allowed; use {', '.join(allowed)}")

    def internal_error(self) -> Reply:
        return self.error(500, "internal error in the mock")

    def invalid_request(self, violations: Sequence[Violation]) -> Reply:
        return self.error(400, "; ".join(v.message for v in violations))

    def guard(self, world: World, scope: Scope, headers: Mapping[str, str]) -> Reply | None:
        """Every control call, routed or not, in this order: an `Origin` other than the server's own is 403
        (a page in a browser), a missing or wrong control token 401 (when the mock has one), a write
        without a JSON Content-Type 415 (what a browser sends cross-origin without a preflight)."""
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in own_origins(scope):
            return self.error(
                403, f"Origin {origin} is not this server's: the control API takes no cross-origin calls"
            )
        expected = world.config.control_token
        # Constant time: the token is what keeps other local users out.
        if expected is not None and not hmac.compare_digest(
            headers.get(CONTROL_TOKEN_HEADER.lower(), "").encode("latin-1"), expected.encode("utf-8")
        ):
            return self.error(401, f"the control API needs the control token in {CONTROL_TOKEN_HEADER}")
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if scope["method"] in WRITE_METHODS and media != JSON_MEDIA_TYPE:
            return self.error(
                415, f"a control {scope['method']} needs Content-Type: {JSON_MEDIA_TYPE}, even without a body"
            )
        return None

    def authenticate(
        self,
        world: World,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        required: bool,
        *,
        optional: bool = False,
    ) -> Credentials | Reply:
        """Nobody to name: `guard` has checked the control token before routing."""
        return Credentials()

    def rate_limited(self, retry_after_ms: int) -> Reply:
        return self.error(429, "rate limited")
