"""How each mocked service says no: error bodies, authentication, path quirks.

The request checks come from the contract (`contracts.validation`); a dialect only decides how a service
words the answer, so a violation found by the validator is answered in Matrix's `{"errcode", "error"}`, in
FastAPI's 422 list for Letta, or in the control API's `{"error"}`; a store's refusal likewise."""

from __future__ import annotations

from mockgen.http.dialects.base import Credentials, Dialect, Reply, own_origins
from mockgen.http.dialects.control import CONTROL_TOKEN_HEADER, WRITE_METHODS, ControlDialect
from mockgen.http.dialects.letta import LettaDialect
from mockgen.http.dialects.matrix import MatrixDialect
from mockgen.store.errors import ControlError, LettaError, MatrixError, UserInteractiveAuthRequired

__all__ = [
    "CONTROL_TOKEN_HEADER",
    "DIALECTS",
    "STORE_ERRORS",
    "WRITE_METHODS",
    "ControlDialect",
    "Credentials",
    "Dialect",
    "LettaDialect",
    "MatrixDialect",
    "Reply",
    "StoreError",
    "error_reply",
    "own_origins",
]

StoreError = MatrixError | UserInteractiveAuthRequired | LettaError | ControlError
STORE_ERRORS = (MatrixError, UserInteractiveAuthRequired, LettaError, ControlError)


def error_reply(error: StoreError) -> Reply:
    """A store's refusal in the words of the service whose store raised it."""
    if isinstance(error, MatrixError):
        return MatrixDialect.error(error.status, error.errcode, error.error, **error.extra)
    if isinstance(error, UserInteractiveAuthRequired):
        return Reply(401, error.body)
    if isinstance(error, LettaError):
        return LettaDialect.detail(error.status, error.detail)
    return ControlDialect.error(error.status, error.error)


DIALECTS: dict[str, Dialect] = {
    "matrix": MatrixDialect(),
    "letta": LettaDialect(),
    "control": ControlDialect(),
}
