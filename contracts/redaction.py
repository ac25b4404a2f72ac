"""Secrets never travel whole: journals, recordings, logs and violation messages all go through here.

One rule says what is secret: a name (a JSON key, a query parameter, a header) that names a password, a
secret, a token, an API key or a credential header (`is_secret_name`). Whatever sits under such a name is
masked, whatever its JSON type: a long string token keeps a short prefix (enough to tell two apart), anything
else becomes `***` (`mask`). One function each applies the rule where a request is kept: a JSON value
(`redact`), a JSON value about to be quoted in a message (`redact_quoted`), a query string (`redact_query`),
headers (`redact_headers`), a location inside a document (`is_secret_path`) and a body that is not JSON at
all (`redact_text`, `redact_bytes`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote_plus

MASK = "***"
ELLIPSIS = "…"
TOKEN_PREFIX = 8
# A token shows its prefix only when that is at most a third of it (the tokens the mocks and the real servers
# hand out are 30 characters and more): a short token would be all but given away.
PREFIXED_TOKEN_MIN = 3 * TOKEN_PREFIX
# What replaces the rest of free text cut after a word that names a secret.
CUT = "…[cut]"
# What a message quotes of a value too deeply nested to look through for secrets.
TOO_DEEP = "(nested too deeply to quote)"
# Names are compared lower-cased with "-" and a camelCase hump read as "_" (so `X-Mock-Control-Token` is
# `x_mock_control_token` and `accessToken` is `access_token`).
# Tokens are whole words at the end of a name: `access_token`, `token`, `login_token`, but not `max_tokens`.
_SECRET_NAME = re.compile(r"password|passwd|secret|(?:^|_)(?:token|api_?key|authorization|cookie)$")
# Secrets whose string values may keep a prefix (the rest are passwords and keys: nothing of them is kept).
_TOKEN_NAME = re.compile(r"(?:^|_)(?:token|authorization)$")
# In free text a secret's name may be spelled any way and its value's end cannot be told: where to cut.
_SECRET_WORD = re.compile(r"pass(?:word|wd)|secret|token|api.?key|authorization|cookie", re.IGNORECASE)
# Query strings are split on both separators servers accept (Twisted, under Synapse, takes ";" too).
_QUERY_SEPARATOR = re.compile(r"([&;])")
# Bounded: a fuzzer sends ever new keys, and the few real ones stay cached.
_NAME_CACHE = 4096


_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _normal(name: str) -> str:
    return _HUMP.sub("_", name).lower().replace("-", "_")


@functools.lru_cache(maxsize=_NAME_CACHE)
def is_secret_name(name: str) -> bool:
    """Whether the value under this key, query parameter or header is a secret."""
    return _SECRET_NAME.search(_normal(name)) is not None


def is_secret_path(path: Iterable[Any]) -> bool:
    """Whether a location in a document (its keys and indices, outermost first) is under a secret name."""
    return any(isinstance(part, str) and is_secret_name(part) for part in path)


def mask_token(token: str) -> str:
    return token[:TOKEN_PREFIX] + ELLIPSIS if len(token) >= PREFIXED_TOKEN_MIN else ELLIPSIS


def mask(name: str, value: Any) -> str:
    """What is kept of a value under a secret name: a string token its prefix, anything else nothing (a
    password sent as a number, an array or an object is as secret as one sent as a string)."""
    if isinstance(value, str) and _TOKEN_NAME.search(_normal(name)) is not None:
        return mask_token(value)
    return MASK


def _walk(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """A copy of a JSON value with every value under a secret name masked and every other leaf passed
    through `leaf`."""
    if isinstance(value, dict):
        return {
            key: mask(key, item) if is_secret_name(key) else _walk(item, leaf) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_walk(item, leaf) for item in value]
    return leaf(value)


def _same(value: Any) -> Any:
    return value


def redact(value: Any) -> Any:
    """A copy of a JSON value with every value under a secret name masked, whatever its type."""
    return _walk(value, _same)


def _secret_end(text: str) -> int | None:
    """Where to cut free text: after the first word that names a secret, when anything follows it."""
    found = _SECRET_WORD.search(text)
    return None if found is None or found.end() == len(text) else found.end()


def redact_text(text: str) -> str:
    """Text that may hold a secret without structure to find it by (a body that is not JSON, a string value
    quoted in a message): kept up to and including the first word that names a secret, cut after it. Where
    that secret's value ends cannot be told in text that does not parse, so nothing after it is kept (a
    word at the very end, as in `m.login.token`, has nothing after it to hide)."""
    end = _secret_end(text)
    return text if end is None else text[:end] + CUT


def redact_bytes(raw: bytes) -> bytes:
    """`redact_text` for a body that is not even UTF-8, read byte for byte (as latin-1)."""
    end = _secret_end(raw.decode("latin-1"))
    return raw if end is None else raw[:end] + CUT.encode("utf-8")


def _quoted_leaf(value: Any) -> Any:
    return redact_text(value) if isinstance(value, str) else value


def redact_quoted(value: Any) -> Any:
    """A JSON value about to be quoted in a message: `redact`ed, and every string in it read as free text
    (`redact_text`), since a client may send a whole body as one string (JSON encoded twice). A value nested
    deeper than the walk can go (a hostile body the decoder still took) is quoted as `TOO_DEEP`."""
    try:
        return _walk(value, _quoted_leaf)
    except RecursionError:
        return TOO_DEEP


def redact_query(query: str) -> str:
    """A query string (as sent: percent-encoded) with the values of secret parameters masked; the names,
    the order and every other parameter stay as they came."""
    if not query:
        return query
    parts = _QUERY_SEPARATOR.split(query)
    for index in range(0, len(parts), 2):  # the odd indices are the separators
        name, equals, value = parts[index].partition("=")
        decoded = unquote_plus(name)
        if equals and is_secret_name(decoded):
            parts[index] = f"{name}={quote(mask(decoded, unquote_plus(value)), safe='')}"
    return "".join(parts)


def _masked_header(name: str, value: str) -> str:
    scheme, space, credential = value.partition(" ")
    if space and _normal(name).endswith("authorization"):
        return f"{scheme} {mask_token(credential)}"  # the scheme says how the client authenticated
    return mask(name, value)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with credentials masked (their presence, and the scheme of an Authorization, stay visible)."""
    return {
        name: _masked_header(name, value) if is_secret_name(name) else value
        for name, value in headers.items()
    }
