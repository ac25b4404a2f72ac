"""Letta handlers: one function per operationId of specs/letta.yaml (snake_case)."""

from __future__ import annotations

from typing import Any

from mockgen.handlers.letta_messages import send_agent_message, stream_agent_message
from mockgen.handlers.letta_wording import path_errors, validation_reply
from mockgen.http.dialects import LettaDialect, Reply
from mockgen.http.dispatch import Call, orders_checks
from mockgen.store.errors import LettaError

SUPPORTED_PROVIDERS = ("letta",)
__all__ = ["send_agent_message", "stream_agent_message"]


def health_check(call: Call) -> Reply:
    return Reply(200, {"version": call.world.letta.version, "status": "ok"})


def list_agents_redirect(call: Call) -> Reply:
    return LettaDialect.redirect(call.headers, "/v1/agents/", call.query_string)


def create_agent_redirect(call: Call) -> Reply:
    return LettaDialect.redirect(call.headers, "/v1/agents/", call.query_string)


def list_agents(call: Call) -> Reply:
    query = call.query
    limit = int(query.get("limit", 50))
    if not -(2**63) <= limit < 2**63:
        # SQLite cannot bind it: Letta 0.11.7 answers its generic 500.
        raise LettaError(500, "An internal server error occurred")
    store = call.world.letta
    page = store.list_agents(
        after=query.get("after"),
        before=query.get("before"),
        # One more than asked tells the envelope whether a next page exists.
        limit=limit + 1 if limit > 0 else limit,
        ascending=bool(query.get("ascending", False)),
        name=query.get("name"),
        tags=query.get("tags"),
        match_all_tags=bool(query.get("match_all_tags", False)),
        query_text=query.get("query_text"),
    )
    has_more = limit > 0 and len(page) > limit
    if has_more:
        page = page[:limit]
    if store.agents_format == "envelope":
        return Reply(200, {"data": page, "cursor": page[-1]["id"] if has_more else None})
    return Reply(200, page)


def create_agent(call: Call) -> Reply:
    body: dict[str, Any] = call.body
    model = body.get("model")
    if model is None and body.get("llm_config") is None:
        raise LettaError(500, "Must specify either model or llm_config in request")
    if model is not None:
        provider = str(model).split("/", 1)[0]
        if provider not in SUPPORTED_PROVIDERS:
            raise LettaError(500, f"Provider {provider} is not supported (supported providers: letta)")
    store = call.world.letta
    agent = store.create(
        body.get("name"),
        tags=body.get("tags"),
        description=body.get("description"),
        metadata=body.get("metadata"),
    )
    return Reply(200, store.describe(agent))


def _malformed_id(call: Call) -> Reply | None:
    """0.16.8's 422 for an agent id its pattern refuses (0.11.7 looks any id up)."""
    store = call.world.letta
    errors = path_errors(store.version, str(call.path["agent_id"]))
    return validation_reply(store.version, errors, call.rejected) if errors else None


def retrieve_agent(call: Call) -> Reply:
    if refused := _malformed_id(call):
        return refused
    return Reply(200, call.world.letta.retrieve(call.path["agent_id"]))


def modify_agent(call: Call) -> Reply:
    if refused := _malformed_id(call):
        return refused
    return Reply(200, call.world.letta.modify(call.path["agent_id"], call.body))


def delete_agent(call: Call) -> Reply:
    if refused := _malformed_id(call):
        return refused
    agent = call.world.letta.delete(call.path["agent_id"])
    return Reply(200, {"message": f"Agent id={agent.id} successfully deleted"})


@orders_checks
def list_messages(call: Call) -> Reply:
    store = call.world.letta
    agent_id = str(call.path["agent_id"])
    errors = [*path_errors(store.version, agent_id), *(LettaDialect.item(v) for v in call.rejected)]
    if errors:
        return validation_reply(store.version, errors, call.rejected)
    # 0.16.8 lists 100 by default and reads `order`: `asc` pages from the oldest message.
    default_limit = 10 if store.version == "0.11.7" else 100
    oldest = store.version == "0.16.8" and call.query.get("order") == "asc"
    if store.version == "0.16.8" and agent_id not in store.agents:
        raise LettaError(404, "Agent not found")
    messages = store.list_messages(
        agent_id,
        after=call.query.get("after"),
        before=call.query.get("before"),
        limit=int(call.query.get("limit", default_limit)),
        oldest=oldest,
    )
    if store.messages_format == "items":
        return Reply(200, {"items": messages})
    return Reply(200, messages)
