"""Small helpers the HTTP tests share: bounded calls and a Matrix registration dance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def errcode(self) -> str | None:
        return self.body.get("errcode") if isinstance(self.body, dict) else None


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    data: bytes | str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | list[tuple[str, str]] | None = None,
    allow_redirects: bool = True,
) -> Answer:
    """One request, bounded by TIMEOUT; the body comes back parsed when it is JSON."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        data = json.dumps(json_body)
        sent.setdefault("Content-Type", "application/json")
    async with session.request(
        method, url, data=data, headers=sent, params=params, timeout=TIMEOUT, allow_redirects=allow_redirects
    ) as response:
        raw = await response.read()
        body: Any = json.loads(raw) if raw and response.content_type == "application/json" else raw.decode()
        return Answer(response.status, body, dict(response.headers))


async def register(session: aiohttp.ClientSession, base: str, username: str, password: str = "pw") -> Answer:
    """The user-interactive-auth registration dance, as a client does it."""
    url = f"{base}/_matrix/client/v3/register"
    first = await call(session, "POST", url, json_body={"username": username, "password": password})
    if first.status != 401:
        return first
    auth = {"type": "m.login.dummy", "session": first.body["session"]}
    return await call(
        session, "POST", url, json_body={"username": username, "password": password, "auth": auth}
    )


async def login(session: aiohttp.ClientSession, base: str, user: str, password: str = "pw") -> str:
    answer = await call(
        session,
        "POST",
        f"{base}/_matrix/client/v3/login",
        json_body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        },
    )
    assert answer.status == 200, answer
    token: str = answer.body["access_token"]
    return token
