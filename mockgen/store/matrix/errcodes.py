"""The Matrix errcodes the mock answers with: exactly the ones specs/matrix.yaml documents (a test keeps the
two equal). Named, so a misspelt errcode fails at import instead of reaching a client."""

from __future__ import annotations

from typing import Final

M_BAD_JSON: Final = "M_BAD_JSON"
M_BAD_STATE: Final = "M_BAD_STATE"
M_FORBIDDEN: Final = "M_FORBIDDEN"
M_INVALID_PARAM: Final = "M_INVALID_PARAM"
M_INVALID_USERNAME: Final = "M_INVALID_USERNAME"
M_LIMIT_EXCEEDED: Final = "M_LIMIT_EXCEEDED"
M_MISSING_PARAM: Final = "M_MISSING_PARAM"
M_MISSING_TOKEN: Final = "M_MISSING_TOKEN"
M_NOT_FOUND: Final = "M_NOT_FOUND"
M_NOT_JSON: Final = "M_NOT_JSON"
M_ROOM_IN_USE: Final = "M_ROOM_IN_USE"
M_TOO_LARGE: Final = "M_TOO_LARGE"
M_UNKNOWN: Final = "M_UNKNOWN"
M_UNKNOWN_TOKEN: Final = "M_UNKNOWN_TOKEN"
M_UNRECOGNIZED: Final = "M_UNRECOGNIZED"
M_UNSUPPORTED_ROOM_VERSION: Final = "M_UNSUPPORTED_ROOM_VERSION"
M_USER_DEACTIVATED: Final = "M_USER_DEACTIVATED"
M_USER_IN_USE: Final = "M_USER_IN_USE"
M_USER_LOCKED: Final = "M_USER_LOCKED"
