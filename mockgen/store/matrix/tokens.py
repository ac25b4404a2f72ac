"""The tokens of /sync (`s<position>_…`) and of /messages (`t<depth>-<position>_…`), as Synapse 1.163 renders
and parses them (the probe numbers in brackets)."""

from __future__ import annotations

import re

from mockgen.store.errors import MatrixError
from mockgen.store.matrix.errcodes import M_UNKNOWN
from mockgen.store.matrix.model import Room

# Synapse's token has 14 per-stream positions; the mock keeps one stream and renders it first, the rest 0.
_TOKEN_TAIL = "_0" * 13
_TOKEN = re.compile(r"^s(\d+)(?:_\d+)*$")
_PAGE_TOKEN = re.compile(r"^t\d+-(\d+)(?:_\d+)*$")


def token(position: int) -> str:
    return f"s{position}{_TOKEN_TAIL}"


def parse_since(since: str, current: int) -> int:
    """A `since` token's position; one from the future is clamped [1.26]; one that does not parse is 400
    M_UNKNOWN [1.23-1.25] (Synapse answers a /messages `t…` token with a 500 [1.28]: the mock, 400)."""
    match = _TOKEN.match(since)
    if match is None:
        raise MatrixError(400, M_UNKNOWN, "Invalid stream token")
    return min(int(match.group(1)), current)


def page_position(value: str | None, name: str, current: int) -> int:
    """A /messages token (`s…` from /sync or `t<depth>-<stream>_…` from /messages) as a stream position;
    `END` is the legacy "no token"; anything else is 400 M_UNKNOWN [3.27, 3.28]."""
    if value is None or value == "END":
        return 0
    match = _TOKEN.match(value) or _PAGE_TOKEN.match(value)
    if match is None:
        raise MatrixError(400, M_UNKNOWN, f"'{name}' parameter is invalid")
    return min(int(match.group(1)), current)


def check_page_token(value: str, name: str) -> None:
    """The form of a /messages `from` or `to` (400 M_UNKNOWN), before the other parameters."""
    page_position(value, name, 0)


def page_token(room: Room, position: int, direction: str) -> str:
    """Synapse's topological token: the depth (events of the room up to the position) and the position; a
    forward page from the room's start begins at `s0_…` [3.5]."""
    if direction == "f" and position == 0:
        return "s0" + _TOKEN_TAIL
    return f"t{room.index_after(position)}-{position}{_TOKEN_TAIL}"
