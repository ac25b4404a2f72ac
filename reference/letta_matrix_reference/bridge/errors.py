"""Everything the bridge raises on purpose. Each error says what failed and, where it can, what to do.

Two kinds matter to the sync loop: `FatalError`s (bad configuration, a mapping file that cannot be read or
written) stop the whole run, because going on would only repeat the failure or lose work; every other
`BridgeError` is about one agent and is reported while the other agents carry on."""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""


class FatalError(BridgeError):
    """Stops the run: no agent can make progress until a human fixes something."""


class ConfigurationError(FatalError):
    """A setting is missing or wrong: a refused token or password, a bot that cannot be created, ..."""


class StoreError(FatalError):
    """The mapping file cannot be read or written safely."""


class ProtocolError(BridgeError):
    """A server answered something its contract does not allow (not JSON, a missing field, ...)."""


class ApiError(BridgeError):
    """A server refused a request with a status that retrying will not change.

    `errcode` is Matrix's `errcode` (None for Letta); `detail` is Matrix's `error` or Letta's `detail`."""

    def __init__(self, service: str, method: str, path: str, status: int, body: Any) -> None:
        self.service = service
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.errcode: str | None = None
        self.detail: str | None = None
        if isinstance(body, dict):
            errcode = body.get("errcode")
            self.errcode = errcode if isinstance(errcode, str) else None
            detail = body.get("error", body.get("detail"))
            self.detail = detail if isinstance(detail, str) else None if detail is None else str(detail)
        elif isinstance(body, str) and body:
            self.detail = body[:200]
        code = f" {self.errcode}" if self.errcode else ""
        said = f": {self.detail}" if self.detail else ""
        super().__init__(f"{service} {method} {path} answered {status}{code}{said}")


class RetriesExhausted(BridgeError):
    """A request kept failing with retryable errors (429, 5xx, lost connections) `attempts` times."""

    def __init__(self, service: str, method: str, path: str, attempts: int, last: str) -> None:
        self.service = service
        self.method = method
        self.path = path
        self.attempts = attempts
        self.last = last
        super().__init__(f"{service} {method} {path} still failing after {attempts} attempts; last: {last}")


class RegistrationError(BridgeError):
    """The homeserver did not finish registering an agent's user (e.g. it asked for more auth)."""


class AgentUserConflict(BridgeError):
    """An agent's Matrix user exists, but the bridge cannot log in as it, so it cannot be adopted."""

    def __init__(self, user_id: str, agent_id: str, reason: str) -> None:
        self.user_id = user_id
        self.agent_id = agent_id
        super().__init__(
            f"{user_id} (for Letta agent {agent_id}) already exists but {reason}. Matrix never frees a user "
            "id, so give that account the password the bridge stored for this agent in its mapping file "
            f"(Synapse admin API: PUT /_synapse/admin/v2/users/{user_id} with that password), then sync "
            "again."
        )
