"""Secrets never travel whole: passwords become `***`, tokens keep a short prefix (journals, recordings,
logs and violation messages all go through here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECRET_KEYS = frozenset({"password", "new_password"})
TOKEN_KEYS = frozenset({"access_token", "refresh_token", "token"})
SECRET_HEADERS = frozenset({"authorization", "x-bare-password", "cookie"})
TOKEN_PREFIX = 8


def mask_token(token: str) -> str:
    return token[:TOKEN_PREFIX] + "…" if len(token) > TOKEN_PREFIX else "…"


def redact(value: Any) -> Any:
    """A copy of a JSON value with passwords masked and tokens shortened."""
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            if key in SECRET_KEYS and isinstance(item, str):
                cleaned[key] = "***"
            elif key in TOKEN_KEYS and isinstance(item, str):
                cleaned[key] = mask_token(item)
            else:
                cleaned[key] = redact(item)
        return cleaned
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with credentials masked (their presence and scheme stay visible)."""
    cleaned: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            scheme, _, secret = value.partition(" ")
            cleaned[name] = f"{scheme} {mask_token(secret)}" if secret else mask_token(value)
        else:
            cleaned[name] = value
    return cleaned
