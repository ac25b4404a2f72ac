"""The validator core's compiled fast path (jsonschema-rs) may only ever say "valid" where openapi-core
agrees: checked on every schema of every spec with valid bodies, arbitrary JSON and near misses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.strategies import strategy_for
from contracts.validation import SchemaCheck, fast_validator, validator_for

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _checks() -> Iterator[tuple[str, Any, SchemaCheck, str]]:
    """(id, schema, check, side) for every schema the core validates with."""
    for service in ("letta", "matrix", "control"):
        for operation in validator_for(service).iter_operations():
            prefix = f"{service}.{operation.operation_id}"
            for (location, name), param in operation.params.items():
                yield f"{prefix}.{location}.{name}", param.schema, param.validator, "request"
            if operation.body is not None:
                for media, (schema, check) in operation.body.media_types.items():
                    yield f"{prefix}.request.{media}", schema, check, "request"
            for status, response in operation.responses.items():
                for media, (schema, check) in response.media_types.items():
                    yield f"{prefix}.{status}.{media}", schema, check, "response"


CHECKS = list(_checks())


def _distinct() -> list[tuple[str, Any, SchemaCheck, str]]:
    """One entry per distinct (schema, side): the Matrix error body alone recurs some hundred times."""
    seen: dict[str, tuple[str, Any, SchemaCheck, str]] = {}
    for name, schema, check, side in CHECKS:
        if check.fast is not None:
            seen.setdefault(json.dumps([schema, side], sort_keys=True), (name, schema, check, side))
    return list(seen.values())


def _mutations(value: Any) -> st.SearchStrategy[Any]:
    """Near misses of a valid value: a field dropped, retyped or nulled; an item swapped for junk."""
    if isinstance(value, dict) and value:
        key = st.sampled_from(sorted(value))
        return st.one_of(
            key.map(lambda k: {n: v for n, v in value.items() if n != k}),
            st.tuples(key, JSON).map(lambda kv: {**value, kv[0]: kv[1]}),
        )
    if isinstance(value, list) and value:
        return st.tuples(st.integers(0, len(value) - 1), JSON).map(
            lambda iv: [*value[: iv[0]], iv[1], *value[iv[0] + 1 :]]
        )
    return JSON


def test_most_schemas_have_a_fast_path() -> None:
    fast = [name for name, _, check, _ in CHECKS if check.fast is not None]
    assert len(fast) / len(CHECKS) > 0.8, "the fast path should cover nearly every schema"


@pytest.mark.parametrize(
    ("schema", "check", "side"), [pytest.param(*rest, id=name) for name, *rest in _distinct()]
)
@settings(suppress_health_check=list(HealthCheck))  # examples: the profile's (ci quick, fuzz thorough)
@given(data=st.data())
def test_the_fast_path_never_accepts_what_openapi_core_refuses(
    schema: Any, check: SchemaCheck, side: str, data: st.DataObject
) -> None:
    assert check.fast is not None
    valid = data.draw(strategy_for(schema, side=side), label="valid")
    assert check.fast.is_valid(valid), "a valid value must take the fast path"
    for candidate in (data.draw(_mutations(valid), label="near miss"), data.draw(JSON, label="any JSON")):
        if check.fast.is_valid(candidate):
            assert list(check.slow.iter_errors(candidate)) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "date-time"},
        {"oneOf": [{"type": "object"}], "discriminator": {"propertyName": "kind"}},
        {"type": "object", "properties": {"secret": {"type": "string", "writeOnly": True}}},
    ],
)
def test_schemas_read_differently_by_json_schema_get_no_fast_path(schema: dict[str, Any]) -> None:
    assert fast_validator(schema, side="response") is None


def test_nullable_enum_refuses_null_on_both_paths() -> None:
    schema = {"type": "string", "enum": ["a"], "nullable": True}
    fast = fast_validator(schema, side="response")
    assert fast is not None
    assert not fast.is_valid(None)
    assert fast.is_valid("a")


PET_DOCUMENT: dict[str, Any] = {
    "components": {
        "schemas": {
            "Cat": {
                "type": "object",
                "required": ["kind", "purrs"],
                "properties": {"purrs": {"type": "boolean"}},
            },
            "Dog": {
                "type": "object",
                "required": ["kind", "barks"],
                "properties": {"barks": {"type": "boolean"}},
            },
        }
    }
}
PET = {
    "oneOf": [PET_DOCUMENT["components"]["schemas"]["Cat"], PET_DOCUMENT["components"]["schemas"]["Dog"]],
    "discriminator": {
        "propertyName": "kind",
        "mapping": {"cat": "#/components/schemas/Cat", "dog": "#/components/schemas/Dog"},
    },
}


@pytest.mark.parametrize(
    ("instance", "valid"),
    [
        ({"kind": "cat", "purrs": True}, True),
        ({"kind": "dog", "barks": True}, True),
        # a dog by its fields, a cat by its claim: the discriminator's branch alone counts
        ({"kind": "cat", "barks": True}, False),
        ({"purrs": True}, False),
        ({"kind": "", "purrs": True}, False),
        ("cat", False),
    ],
)
def test_a_discriminated_union_is_read_by_its_mapping_alone(instance: Any, valid: bool) -> None:
    fast = fast_validator(PET, side="response", document=PET_DOCUMENT)
    assert fast is not None
    assert fast.is_valid(instance) is valid


def test_a_value_the_mapping_lacks_is_left_to_the_slow_path() -> None:
    fast = fast_validator(PET, side="response", document=PET_DOCUMENT)
    assert fast is not None
    assert not fast.is_valid({"kind": "Cat", "purrs": True})


def test_a_letta_answer_takes_the_fast_path_and_a_wrong_message_does_not() -> None:
    operation = validator_for("letta").operations["sendAgentMessage"]
    _, check = operation.responses["200"].media_types["application/json"]
    assert check.fast is not None
    said: dict[str, Any] = {
        "id": "message-1",
        "date": "2026-01-01T00:00:00Z",
        "message_type": "assistant_message",
        "content": "hi",
    }
    answer: dict[str, Any] = {
        "messages": [said],
        "stop_reason": {"message_type": "stop_reason", "stop_reason": "end_turn"},
    }
    answer["usage"] = {
        "message_type": "usage_statistics",
        "completion_tokens": 1,
        "prompt_tokens": 1,
        "total_tokens": 2,
        "step_count": 1,
    }
    assert check.fast.is_valid(answer)
    assert list(check.slow.iter_errors(answer)) == []
    for wrong in ({**said, "date": "yesterday"}, {**said, "message_type": "tool_call_message"}):
        bad = {**answer, "messages": [wrong]}
        assert not check.fast.is_valid(bad)
        assert list(check.slow.iter_errors(bad)) != []
