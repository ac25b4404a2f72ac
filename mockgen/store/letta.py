"""The Letta server's state (agents and their messages), kept as Letta 0.11.7 keeps it; no HTTP here."""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from contracts.fakellm import letta_notice
from mockgen.store.errors import LettaError
from mockgen.store.letta_llm import Ask
from mockgen.store.letta_turns import (
    DEFAULT_VERSION,
    HIDDEN_WITH,
    Script,
    Turn,
    TurnPlayer,
    TurnRequest,
    Version,
    input_text,
)

AGENT_ID = re.compile(r"agent-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Letta's own check (`letta/constants.py`), used by GET /v1/agents/{agent_id} only: case-insensitive, a uuid4
# (version and variant nibbles), and `$` lets one trailing newline through. Other agent routes never check.
AGENT_ID_PATTERN = re.compile(
    r"^agent-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE
)
USER_ID = "user-00000000-0000-4000-8000-000000000000"
ORGANIZATION_ID = "org-00000000-0000-4000-8000-000000000000"
AgentsFormat = Literal["array", "envelope"]
MessagesFormat = Literal["array", "items"]


def _stamp(moment: float) -> str:
    """Letta 0.11.7 on SQLite: second precision, no zone."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _message_date(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class Agent:
    id: str
    name: str
    created_at: str
    sequence: int
    updated_at: str
    tags: list[str] = field(default_factory=list)
    description: str | None = None
    metadata: dict[str, Any] | None = None
    system: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    agent_type: str = "memgpt_v2_agent"
    scripts: list[Script] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "created_by_id": USER_ID,
            "last_updated_by_id": USER_ID,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "id": self.id,
            "name": self.name,
            "tool_rules": [],
            "message_ids": sorted({m["id"] for m in self.messages}),
            "system": self.system,
            "agent_type": self.agent_type,
            "llm_config": {
                "model": "letta-free",
                "model_endpoint_type": "openai",
                "model_endpoint": "https://inference.letta.com/v1/",
                "context_window": 30000,
                "handle": "letta/letta-free",
            },
            "embedding_config": {
                "embedding_endpoint_type": "openai",
                "embedding_model": "letta-free",
                "embedding_dim": 1536,
                "handle": "letta/letta-free",
            },
            "description": self.description,
            "metadata": copy.deepcopy(self.metadata),
            "tools": [],
            "sources": [],
            "tags": list(self.tags),
        }


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON value."""
    return json.loads(json.dumps(value))


class LettaStore:
    """Agents ordered by creation time (ties broken by creation order, as the sequence of inserts)."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        version: Version = DEFAULT_VERSION,
    ) -> None:
        self._clock = clock
        self.version: Version = version
        self._player = TurnPlayer(version, self._uuid, lambda: _message_date(self._clock()))
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self.agents: dict[str, Agent] = {}
        self._sequence = 0
        self.agents_format: AgentsFormat = "array"
        self.messages_format: MessagesFormat = "array"
        # When Letta made its default user (named in PATCH's 404 text): the store's start, to the second.
        self._user_created = datetime.fromtimestamp(int(time.time()), UTC).replace(tzinfo=None)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _message_id(self) -> str:
        return f"message-{self._uuid()}"

    def _initial_messages(self, name: str, moment: float) -> list[dict[str, Any]]:
        """A fresh Letta agent's history: the system prompt, a greeting turn, a login event (0.16.8: the
        system prompt alone)."""
        date = _message_date(moment)
        if self.version == "0.16.8":
            return [
                {
                    "id": self._message_id(),
                    "date": date,
                    "message_type": "system_message",
                    "content": f"You are {name}.",
                }
            ]
        turn = self._message_id()
        call_id = self._uuid()
        return [
            {
                "id": self._message_id(),
                "date": date,
                "message_type": "system_message",
                "content": f"You are {name}.",
            },
            {
                "id": turn,
                "date": date,
                "message_type": "reasoning_message",
                "source": "non_reasoner_model",
                "reasoning": "Bootup sequence complete. Persona activated. Testing messaging functionality.",
                "signature": None,
            },
            {
                "id": turn,
                "date": date,
                "message_type": "assistant_message",
                "content": "More human than human is our motto.",
            },
            {
                "id": self._message_id(),
                "date": date,
                "message_type": "tool_return_message",
                "name": "send_message",
                "tool_return": "None",
                "status": "success",
                "tool_call_id": call_id,
                "stdout": None,
                "stderr": None,
                HIDDEN_WITH: turn,
            },
            {
                "id": self._message_id(),
                "date": date,
                "message_type": "user_message",
                "content": '{"type": "login", "last_login": "Never (first login)"}',
            },
        ]

    # -- queries

    def check_id(self, agent_id: str) -> None:
        """The ids the mock itself hands out or is seeded with: `agent-<uuid>`, lower case, whole."""
        if not AGENT_ID.fullmatch(agent_id):
            raise LettaError(400, f"agent_id {agent_id} is not in the valid format 'agent-<uuid4>'")

    def _get(self, agent_id: str) -> Agent:
        """The live agent: only for use under the lock. Ids are compared exactly (no format check)."""
        agent = self.agents.get(agent_id)
        if agent is None:
            raise LettaError(404, f"Agent with ID {agent_id} not found")
        return agent

    def retrieve(self, agent_id: str) -> dict[str, Any]:
        """The agent as served, serialized under the lock (a concurrent change cannot tear it). The only
        route whose id Letta checks: with `AGENT_ID_PATTERN`, 400 before the lookup."""
        if not AGENT_ID_PATTERN.match(agent_id):
            raise LettaError(400, f"agent_id {agent_id} is not in the valid format 'agent-<uuid4>'")
        with self._lock:
            return self._get(agent_id).to_json()

    def describe(self, agent: Agent) -> dict[str, Any]:
        """`agent.to_json()` under the lock."""
        with self._lock:
            return agent.to_json()

    def _ordered(self, ascending: bool) -> list[Agent]:
        return sorted(self.agents.values(), key=lambda a: (a.created_at, a.sequence), reverse=not ascending)

    def list_agents(
        self,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int | None = 50,
        ascending: bool = False,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        match_all_tags: bool = False,
        query_text: str | None = None,
    ) -> list[dict[str, Any]]:
        """One page. Cursors that name no agent are ignored; a limit of 0 or less means no limit."""
        with self._lock:
            ordered = self._ordered(ascending)
            ids = [agent.id for agent in ordered]
            if after is not None and after in ids:
                ordered = ordered[ids.index(after) + 1 :]
            if before is not None:
                positions = [agent.id for agent in ordered]
                if before in positions:
                    ordered = ordered[: positions.index(before)]
            if name is not None:
                ordered = [agent for agent in ordered if agent.name == name]
            if query_text:
                ordered = [agent for agent in ordered if query_text.lower() in agent.name.lower()]
            if tags:
                wanted = set(tags)
                ordered = [
                    agent
                    for agent in ordered
                    if (wanted <= set(agent.tags) if match_all_tags else wanted & set(agent.tags))
                ]
            if limit is not None and limit > 0:
                ordered = ordered[:limit]
            return [agent.to_json() for agent in ordered]

    def list_messages(
        self,
        agent_id: str,
        *,
        after: str | None = None,
        before: str | None = None,
        limit: int = 10,
        oldest: bool = False,
    ) -> list[dict[str, Any]]:
        """The newest `limit` messages (after/before the cursor messages), oldest first. A cursor that names
        no message of the agent is 404, as Letta answers it. 0.11.7 counts stored rows (the messages that
        share an id: a reasoning and its assistant message are one) and hides a send_message return whose
        call is on the same page."""
        with self._lock:
            messages = list(self._get(agent_id).messages)
            ids = [message["id"] for message in messages]
            for cursor in (after, before):
                if cursor is not None and cursor not in ids:
                    raise LettaError(404, f"No message found with id '{cursor}' for agent '{agent_id}'.")
            if after is not None:
                last = len(ids) - 1 - ids[::-1].index(after)
                messages = messages[last + 1 :]
                ids = ids[last + 1 :]
            if before is not None and before in ids:
                messages = messages[: ids.index(before)]
            if self.version == "0.11.7":
                return _page_of_rows(messages, limit)
            if limit > 0:
                messages = messages[:limit] if oldest else messages[-limit:]
            return [_public(message) for message in messages]

    # -- changes

    def create(
        self,
        name: str | None = None,
        *,
        agent_id: str | None = None,
        created_at: str | None = None,
        tags: Sequence[str] | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        messages: Sequence[dict[str, Any]] | None = None,
    ) -> Agent:
        with self._lock:
            moment = self._clock()
            self._sequence += 1
            if agent_id is not None:
                self.check_id(agent_id)
                if agent_id in self.agents:
                    raise LettaError(409, f"Agent {agent_id} already exists")
            new_id = agent_id or f"agent-{self._uuid()}"
            # Letta names unnamed agents itself (adjective-noun); a stable stand-in does here.
            agent_name = name if name is not None else f"agent-{self._sequence}"
            stamp = created_at or _stamp(moment)
            if messages is None:
                history = self._initial_messages(agent_name, moment)
            else:
                history = []
                for message in messages:
                    filled = copy.deepcopy(dict(message))
                    filled.setdefault("id", self._message_id())
                    filled.setdefault("date", _message_date(moment))
                    history.append(filled)
            agent = Agent(
                id=new_id,
                name=agent_name,
                created_at=stamp,
                sequence=self._sequence,
                updated_at=datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                tags=list(tags or []),
                description=description,
                metadata=copy.deepcopy(metadata),
                system=f"You are {agent_name}.",
                messages=history,
                agent_type="letta_v1_agent" if self.version == "0.16.8" else "memgpt_v2_agent",
            )
            self.agents[new_id] = agent
            return agent

    def modify(self, agent_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply `changes`; returns the agent as served, serialized under the lock."""
        with self._lock:
            agent = self.agents.get(agent_id)
            if agent is None:
                raise LettaError(404, self._not_found_for_update(agent_id))
            # Every new value first, then the assignments (which cannot fail): a change that fails leaves
            # the agent as it was.
            updated: dict[str, Any] = {}
            if changes.get("name") is not None:
                updated["name"] = str(changes["name"])
            if "description" in changes:
                updated["description"] = changes["description"]
            if changes.get("tags") is not None:
                updated["tags"] = list(changes["tags"])
            if changes.get("system") is not None:
                updated["system"] = str(changes["system"])
            if "metadata" in changes:
                updated["metadata"] = copy.deepcopy(changes["metadata"])
            updated["updated_at"] = datetime.fromtimestamp(self._clock(), UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%f"
            )
            for name, value in updated.items():
                setattr(agent, name, value)
            return agent.to_json()

    def _not_found_for_update(self, agent_id: str) -> str:
        """Letta's PATCH 404: the access check's message, naming the default user (and when it was made)."""
        stamp = repr(self._user_created)
        actor = (
            f"id='{USER_ID}' organization_id='{ORGANIZATION_ID}' name='default_user' "
            f"created_at={stamp} updated_at={stamp} is_deleted=False"
        )
        return f"Agent not found with id='['{agent_id}']', access level in ['read'] for actor='{actor}'"

    def delete(self, agent_id: str) -> Agent:
        with self._lock:
            agent = self.agents.pop(agent_id, None)
            if agent is None:
                raise LettaError(404, f"Agent agent_id={agent_id} not found for user_id={USER_ID}.")
            return agent

    # -- turns

    def script(self, agent_id: str, turns: Sequence[Script]) -> int:
        """Queue the agent's next turns; how many are queued now."""
        with self._lock:
            agent = self._get(agent_id)
            agent.scripts.extend(turns)
            return len(agent.scripts)

    def new_id(self, prefix: str) -> str:
        """`<prefix>-<uuid4>` from the store's random source (e.g. a stream's `ping-...`)."""
        with self._lock:
            return f"{prefix}-{self._uuid()}"

    def message_date(self) -> str:
        return _message_date(self._clock())

    def exists(self, agent_id: str) -> None:
        """404 for an agent id that names no agent."""
        with self._lock:
            self._get(agent_id)

    def run_turn(self, agent_id: str, request: TurnRequest) -> Turn:
        """Play the agent's next turn (its next script, else the echo turn) and keep what it said; a failed
        turn keeps nothing, as Letta keeps nothing of one."""
        with self._lock:
            agent = self._get(agent_id)
            script = agent.scripts.pop(0) if agent.scripts else Script()
            turn = self._player.play(request, script, self._ask(agent, request), agent.messages)
            if turn.failure is None:
                agent.messages.extend(turn.history)
            # A copy the caller may keep past the lock. Its messages, history and usage are JSON (what the
            # answer is made of): a JSON round trip copies them in a fraction of deepcopy's time, which was
            # a third of a turn's.
            return replace(
                turn,
                messages=_json_copy(turn.messages),
                history=_json_copy(turn.history),
                usage=_json_copy(turn.usage),
                script=copy.deepcopy(turn.script),
            )

    @staticmethod
    def _ask(agent: Agent, request: TurnRequest) -> Ask:
        """What the fake LLM is asked: the turn's last user text (its marker counts), else the last thing
        the user said before (a system message or `messages: []` only; no marker counts then)."""
        for message in reversed(request.inputs):
            if message.get("role") == "user":
                return Ask.of(input_text(message["content"]), own=True)
        for stored in reversed(agent.messages):
            text = stored.get("content")
            if (
                stored["message_type"] == "user_message"
                and isinstance(text, str)
                and letta_notice(text) is None
            ):
                return Ask.of(text, own=False)
        return Ask.of("", own=False)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"id": a.id, "name": a.name, "created_at": a.created_at, "messages": len(a.messages)}
                for a in self._ordered(ascending=True)
            ]


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in message.items() if not key.startswith("_")}


def _page_of_rows(messages: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Letta 0.11.7's page: the newest `limit` rows, a send_message return left out when its call is on it."""
    rows: list[list[dict[str, Any]]] = []
    for message in messages:
        if rows and rows[-1][0]["id"] == message["id"]:
            rows[-1].append(message)
        else:
            rows.append([message])
    if limit > 0:
        rows = rows[-limit:]
    page = [message for row in rows for message in row]
    on_page = {message["id"] for message in page}
    return [_public(m) for m in page if m.get(HIDDEN_WITH) is None or m[HIDDEN_WITH] not in on_page]
