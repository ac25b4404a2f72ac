"""The Letta calls the bridge makes: list every agent, paging through both list formats; send an agent a
message (one turn)."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from letta_matrix_reference.bridge.errors import BridgeError, ConfigurationError, ProtocolError
from letta_matrix_reference.bridge.http import JsonClient, Response, RetryPolicy, Sleep, shape

log = logging.getLogger(__name__)

# The list route proper: `/v1/agents` (no slash) only answers 307 to this one.
AGENTS_PATH = "/v1/agents/"


@dataclass(frozen=True)
class Agent:
    """The two facts about a Letta agent the bridge relies on."""

    id: str
    name: str


@dataclass(frozen=True)
class AgentListing:
    """Every agent found, newest first, and whether the listing is known to be complete. An incomplete
    listing (the page cap was hit) must not be read as "the missing agents were deleted"."""

    agents: tuple[Agent, ...]
    complete: bool


def _agent(item: Any) -> Agent:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("id"), str)
        or not isinstance(item.get("name"), str)
    ):
        raise ProtocolError(f"Letta listed an agent without a string id and name; it is {shape(item)}")
    return Agent(item["id"], item["name"])


class LettaClient(JsonClient):
    service: ClassVar[str] = "letta"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        retry: RetryPolicy,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        page_limit: int = 50,
        max_pages: int = 1000,
    ) -> None:
        super().__init__(
            base_url,
            timeout=timeout,
            retry=retry,
            sleep=sleep,
            rng=rng,
            headers={"Authorization": f"Bearer {token}"},
        )
        self.page_limit = page_limit
        self.max_pages = max_pages

    def error_for(self, method: str, path: str, response: Response) -> BridgeError:
        if response.status == 401:
            # Letta checks the token before anything else, so a 401 is always about the token.
            return ConfigurationError(
                f"Letta at {self.base_url} refused the token (401); check --letta-token / LETTA_TOKEN"
            )
        return super().error_for(method, path, response)

    async def list_agents(self) -> AgentListing:
        """Every agent, paging with `after` + `limit`.

        A page is a bare array (the next cursor is its last agent; a short page is the last one) or an
        envelope `{"data": [...], "cursor": ...}` (a null cursor ends the list). Paging also stops at an
        empty page; and, calling the listing incomplete, at a cursor seen before (a server going round in
        circles) and at `max_pages`."""
        found: dict[str, Agent] = {}
        used: set[str] = set()
        after: str | None = None
        for _ in range(self.max_pages):
            params = {"limit": str(self.page_limit)}
            if after is not None:
                params["after"] = after
            body = (await self.request("GET", AGENTS_PATH, params=params)).body
            page, cursor, envelope = self._page(body)
            for agent in page:
                # A cursor naming no agent (e.g. one deleted while we page) is ignored and the listing
                # starts again from the top (specs/letta.yaml), so agents can come twice.
                found.setdefault(agent.id, agent)
            if not page:
                return AgentListing(tuple(found.values()), complete=True)
            if envelope:
                if cursor is None:
                    return AgentListing(tuple(found.values()), complete=True)
            elif len(page) < self.page_limit:
                return AgentListing(tuple(found.values()), complete=True)
            else:
                cursor = page[-1].id
            if cursor in used:
                # The server is going round in circles: what it has not listed may still exist.
                log.warning("Letta repeated the cursor %s; stopping, with the agent list incomplete", cursor)
                return AgentListing(tuple(found.values()), complete=False)
            used.add(cursor)
            after = cursor
        log.warning(
            "stopped listing Letta agents after %d pages (max_pages) with %d agents; the list may be "
            "incomplete, so no agent is marked removed in this sync",
            self.max_pages,
            len(found),
        )
        return AgentListing(tuple(found.values()), complete=False)

    @staticmethod
    def _page(body: Any) -> tuple[list[Agent], str | None, bool]:
        """(agents, cursor, whether the page was an envelope that says where the list ends)."""
        if isinstance(body, list):
            return [_agent(item) for item in body], None, False
        if isinstance(body, dict) and isinstance(body.get("data"), list):
            cursor = body.get("cursor")
            if cursor is not None and not isinstance(cursor, str):
                raise ProtocolError(f"Letta's agent list cursor is not a string: {cursor!r}")
            # Without a `cursor` key the envelope says nothing about the end: page like a bare array.
            return [_agent(item) for item in body["data"]], cursor, "cursor" in body
        raise ProtocolError(
            f"Letta's agent list is neither an array nor {{data, cursor}}; it is {shape(body)}"
        )

    async def send_message(
        self, agent_id: str, text: str, *, otid: str | None = None
    ) -> list[dict[str, Any]]:
        """One turn of the agent on a user message `text`: the messages it answered with (sendAgentMessage).
        `otid` is kept with the message in the agent's history."""
        message: dict[str, Any] = {"role": "user", "content": text}
        if otid is not None:
            message["otid"] = otid
        path = f"{AGENTS_PATH}{quote(agent_id, safe='')}/messages"
        body = (await self.request("POST", path, json_body={"messages": [message]})).body
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not all(isinstance(item, dict) for item in messages):
            raise ProtocolError(f"Letta's turn answer has no list of messages; it is {shape(body)}")
        return messages
