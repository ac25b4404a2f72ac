"""Errors the stores raise; the HTTP layer turns them into each service's own error body."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """A Matrix error answer: status, errcode, human message and any extra body fields."""

    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(f"{status} {errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


class UserInteractiveAuthRequired(Exception):
    """Registration needs (more) user-interactive auth: the 401 body the client continues from."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("user-interactive auth required")
        self.body = body


class LettaError(Exception):
    """A Letta error answer: `{"detail": ...}` with a status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class ControlError(Exception):
    """A refused control-API request."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
