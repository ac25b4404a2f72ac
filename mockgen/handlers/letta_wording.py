"""How Letta words a message request it refuses (422): pydantic's errors for its request models, as FastAPI
lists them (0.11.7) or as the Python repr string 0.16.8 sends. Each `messages` item is tried against every
member of the union it may be, one error per failed member, as the servers answered."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from contracts.validation import Violation
from mockgen.http.dialects import LettaDialect, Reply
from mockgen.store.letta_turns import Version

ROLE_MSG = "Input should be <MessageRole.user: 'user'>, <MessageRole.system: 'system'> or <MessageRole.assistant: 'assistant'>"  # noqa: E501 (a server's text, verbatim)
PARTS = (
    "list[tagged-union[TextContent,ImageContent,ToolCallContent,ToolReturnContent,ReasoningContent,"
    "RedactedReasoningContent,OmittedReasoningContent]]"
)
# 0.16.8 adds SummarizedReasoningContent last (seen live: `make live016`'s differential).
PARTS_16 = PARTS.replace("OmittedReasoningContent]]", "OmittedReasoningContent,SummarizedReasoningContent]]")
PART_TAGS = (
    "text",
    "image",
    "tool_call",
    "tool_return",
    "reasoning",
    "redacted_reasoning",
    "omitted_reasoning",
)
# 0.16.8 names one more tag in its union_tag_invalid message (seen live); the mock accepts PART_TAGS.
PART_TAGS_16 = (*PART_TAGS, "summarized_reasoning")
# 0.16.8's own agent-id check (pydantic, case-sensitive), and what its 422 adds as `examples`.
AGENT_ID_16 = re.compile(r"^agent-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
AGENT_ID_EXAMPLE = "agent-123e4567-e89b-42d3-8456-426614174000"
# The union members a `messages` item is tried against, as each version names them in `loc`.
MEMBERS = {
    "0.11.7": ("MessageCreate", "ApprovalCreate"),
    "0.16.8": (
        "function-after[generate_otid_if_missing(), MessageCreate]",
        "function-after[migrate_deprecated_fields(), function-after[generate_otid_if_missing(), ApprovalCreate]]",  # noqa: E501 (a server's text, verbatim)
        "function-after[generate_otid_if_missing(), ToolReturnCreate]",
    ),
}
NO_INPUT = "Must specify either 'input' or 'messages'."
BOOL_FIELDS = ("use_assistant_message", "enable_thinking")
STREAM_BOOL_FIELDS = ("stream_tokens", "include_pings", "background")
STRING_FIELDS = ("assistant_message_tool_name", "assistant_message_tool_kwarg")


def _literal(loc: list[Any], value: Any, expected: str) -> dict[str, Any]:
    return {
        "type": "literal_error",
        "loc": loc,
        "msg": f"Input should be {expected}",
        "input": value,
        "ctx": {"expected": expected},
    }


def _missing(loc: list[Any], value: Any) -> dict[str, Any]:
    return {"type": "missing", "loc": loc, "msg": "Field required", "input": value}


def _expected_tags(version: Version) -> str:
    """The tags a part may have, as the version's pydantic names them: the enum's members (both seen live)."""
    tags = PART_TAGS if version == "0.11.7" else PART_TAGS_16
    return ", ".join(f"<MessageContentType.{t}: '{t}'>" for t in tags)


def _part_errors(version: Version, loc: list[Any], parts: list[Any], name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for n, part in enumerate(parts):
        at = [*loc, name, n]
        tag = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or tag is None:
            found.append(
                {
                    "type": "union_tag_not_found",
                    "loc": at,
                    "msg": "Unable to extract tag using discriminator 'type'",
                    "input": part,
                    "ctx": {"discriminator": "'type'"},
                }
            )
        elif tag not in PART_TAGS:
            tags = _expected_tags(version)
            found.append(
                {
                    "type": "union_tag_invalid",
                    "loc": at,
                    "msg": f"Input tag '{tag}' found using 'type' does not match any of the expected tags: {tags}",  # noqa: E501 (a server's text, verbatim)
                    "input": part,
                    "ctx": {"discriminator": "'type'", "tag": str(tag), "expected_tags": tags},
                }
            )
        elif tag == "text" and not isinstance(part.get("text"), str):
            text_at = [*at, "text", "text"]
            found.append(
                _missing(text_at, part)
                if "text" not in part
                else {
                    "type": "string_type",
                    "loc": text_at,
                    "msg": "Input should be a valid string",
                    "input": part["text"],
                }
            )
        elif tag == "image" and not isinstance(part.get("source"), dict):
            found.append(_missing([*at, "image", "source"], part))
    return found


def _item_errors(version: Version, loc: list[Any], item: Any) -> list[dict[str, Any]]:
    """One `messages` item's errors: those of MessageCreate, then of every other member of the union."""
    if not isinstance(item, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": [*loc, member],
                "msg": "Input should be a valid dictionary or object to extract fields from",
                "input": item,
            }
            for member in MEMBERS[version]
        ]
    typed = item if "type" in item else {**item, "type": "message"}
    create, *others = MEMBERS[version]
    parts_name = PARTS if version == "0.11.7" else PARTS_16
    found: list[dict[str, Any]] = []
    role = item.get("role")
    if "role" not in item:
        found.append(_missing([*loc, create, "role"], typed))
    elif role not in ("user", "system", "assistant"):
        found.append(
            {
                **_literal([*loc, create, "role"], role, ""),
                "msg": ROLE_MSG,
                "ctx": {"expected": ROLE_MSG.removeprefix("Input should be ")},
            }
        )
    content = item.get("content")
    if "content" not in item:
        found.append(_missing([*loc, create, "content"], typed))
    elif isinstance(content, list):
        parts = _part_errors(version, [*loc, create, "content"], content, parts_name)
        if parts:
            found += [
                {
                    "type": "string_type",
                    "loc": [*loc, create, "content", "str"],
                    "msg": "Input should be a valid string",
                    "input": content,
                },
                *parts,
            ]
    elif not isinstance(content, str):
        found += [
            {
                "type": "string_type",
                "loc": [*loc, create, "content", "str"],
                "msg": "Input should be a valid string",
                "input": content,
            },
            {
                "type": "list_type",
                "loc": [*loc, create, "content", parts_name],
                "msg": "Input should be a valid list",
                "input": content,
            },
        ]
    for name in ("name", "otid", "sender_id", "batch_item_id", "group_id"):
        if item.get(name) is not None and not isinstance(item[name], str):
            found.append(
                {
                    "type": "string_type",
                    "loc": [*loc, create, name],
                    "msg": "Input should be a valid string",
                    "input": item[name],
                }
            )
    if not found:
        return []
    kind = typed.get("type")
    if version == "0.11.7":
        found.append(_literal([*loc, others[0], "type"], kind, "<MessageCreateType.approval: 'approval'>"))
        found += [_missing([*loc, others[0], name], typed) for name in ("approve", "approval_request_id")]
    else:
        found.append(_literal([*loc, others[0], "type"], kind, "<MessageCreateType.approval: 'approval'>"))
        found.append(
            _literal([*loc, others[1], "type"], kind, "<MessageCreateType.tool_return: 'tool_return'>")
        )
        found.append(_missing([*loc, others[1], "tool_returns"], typed))
    return found


def _scalar_errors(body: dict[str, Any], stream: bool) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if "max_steps" in body and (
        isinstance(body["max_steps"], bool) or not isinstance(body["max_steps"], int)
    ):
        value = body["max_steps"]
        kind = "int_parsing" if isinstance(value, str) else "int_type"
        msg = "Input should be a valid integer" + (
            ", unable to parse string as an integer" if isinstance(value, str) else ""
        )
        found.append({"type": kind, "loc": ["body", "max_steps"], "msg": msg, "input": value})
    for name in (*BOOL_FIELDS[:1], *STRING_FIELDS, *(STREAM_BOOL_FIELDS if stream else ())):
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if name in STRING_FIELDS and not isinstance(value, str):
            found.append(
                {
                    "type": "string_type",
                    "loc": ["body", name],
                    "msg": "Input should be a valid string",
                    "input": value,
                }
            )
        elif name not in STRING_FIELDS and not isinstance(value, bool):
            found.append(
                {
                    "type": "bool_parsing",
                    "loc": ["body", name],
                    "msg": "Input should be a valid boolean, unable to interpret input",
                    "input": value,
                }
            )
    types = body.get("include_return_message_types")
    if types is not None and not isinstance(types, list):
        found.append(
            {
                "type": "list_type",
                "loc": ["body", "include_return_message_types"],
                "msg": "Input should be a valid list",
                "input": types,
            }
        )
    return found


def path_errors(version: Version, agent_id: str) -> list[dict[str, Any]]:
    """0.16.8 checks an agent id's format on its agent and message routes (0.11.7 looks any id up: 404)."""
    if version == "0.11.7" or AGENT_ID_16.fullmatch(agent_id):
        return []
    return [
        {
            "type": "string_pattern_mismatch",
            "loc": ["path", "agent_id"],
            "msg": "String should match pattern 'agent-{uuid4}'",
            "input": agent_id,
            "ctx": {"pattern": AGENT_ID_16.pattern},
        }
    ]


def request_errors(
    version: Version, agent_id: str, body: Any, rejected: Sequence[Violation], *, stream: bool
) -> list[dict[str, Any]] | None:
    """The 422's errors for this request, or None when the server takes it."""
    found = path_errors(version, agent_id)
    whole = [v for v in rejected if v.location == "request body" and v.pointer == ""]
    if whole:
        found += [LettaDialect.item(v) for v in whole]
    elif isinstance(body, dict):
        found += _body_errors(version, body, stream)
    if not found and rejected:
        # What the validator refuses and these models miss is still refused, in FastAPI's general words.
        found = [LettaDialect.item(v) for v in rejected]
    return found or None


def _body_errors(version: Version, body: dict[str, Any], stream: bool) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if version == "0.11.7" and "messages" not in body:
        found.append(_missing(["body", "messages"], body))
    elif version == "0.16.8" and body.get("messages") is None:
        if not isinstance(body.get("input"), str | list):
            found.append(
                {
                    "type": "value_error",
                    "loc": ["body"],
                    "msg": f"Value error, {NO_INPUT}",
                    "input": body,
                    "ctx": {"error": ValueError(NO_INPUT)},
                }
            )
    elif not isinstance(body["messages"], list):
        found.append(
            {
                "type": "list_type",
                "loc": ["body", "messages"],
                "msg": "Input should be a valid list",
                "input": body["messages"],
            }
        )
    else:
        for n, item in enumerate(body["messages"]):
            found += _item_errors(version, ["body", "messages", n], item)
    return found + _scalar_errors(body, stream)


def validation_reply(version: Version, errors: list[dict[str, Any]], rejected: Sequence[Violation]) -> Reply:
    """The 422: FastAPI's list (0.11.7), or its Python repr with `trace_id` (0.16.8)."""
    del rejected
    if version == "0.11.7":
        return LettaDialect.detail(422, [_jsonable(e) for e in errors])
    shown = [{**e, "loc": tuple(e["loc"])} for e in errors]
    answer: dict[str, Any] = {"trace_id": "", "detail": repr(shown)}
    if any(e["loc"][:1] == ["path"] for e in errors):
        answer["examples"] = [AGENT_ID_EXAMPLE]
    return Reply(422, answer)


def _jsonable(error: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's JSON of an error: an exception in `ctx` becomes `{}`."""
    ctx = error.get("ctx")
    if isinstance(ctx, dict) and any(isinstance(v, Exception) for v in ctx.values()):
        return {**error, "ctx": {k: ({} if isinstance(v, Exception) else v) for k, v in ctx.items()}}
    return error
