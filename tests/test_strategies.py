"""The spec-derived strategies draw only what the contract allows, in every documented cell."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from contracts.coverage import Coverage
from contracts.oas import to_json_schema
from contracts.strategies import (
    UnsupportedSchema,
    encode,
    request_bodies,
    response_bodies,
    strategy_for,
)
from contracts.validation import validator_for
from contracts.validation.sse import DONE, SSE_MEDIA_TYPE, Event, encode_event

CELLS = list(Coverage.documented({service: validator_for(service) for service in ("letta", "matrix")}).cells)
HEADERS = {"content-type": "application/json", "retry-after": "1", "location": "http://localhost/"}


@pytest.mark.parametrize(("service", "operation_id", "status", "variant"), CELLS, ids=str)
def test_every_drawn_response_body_is_valid(
    service: str, operation_id: str, status: int, variant: str | None
) -> None:
    validator = validator_for(service)
    operation = validator.operations[operation_id]

    spec = operation.response(status)
    media = next(iter(spec.media_types), "application/json") if spec else "application/json"
    streamed = media == SSE_MEDIA_TYPE
    text = media.startswith("text/") and not streamed  # a proxy's error page: the drawn string is the body

    @given(response_bodies(operation_id, status, service=service, variant=variant))
    def check(body: Any) -> None:
        if body is None:
            return
        headers = {**HEADERS, "content-type": media}
        payload = body.encode("utf-8", "surrogatepass") if text else encode(body)
        if streamed:
            # One drawn event, framed as a stream (ended by [DONE] unless it ends the stream itself).
            event = Event(body["event"], body["data"])
            payload = encode_event(event.data, event.event) + (b"" if event.terminal else encode_event(DONE))
        problems, found = validator.check_response(operation, status=status, headers=headers, body=payload)
        assert [p.message for p in problems] == []
        assert found == variant

    check()


REQUEST_OPERATIONS = [
    (service, operation.operation_id)
    for service in ("letta", "matrix")
    for operation in validator_for(service).iter_operations()
    if operation.body is not None
]


@pytest.mark.parametrize(("service", "operation_id"), REQUEST_OPERATIONS)
def test_every_drawn_request_body_is_valid(service: str, operation_id: str) -> None:
    validator = validator_for(service)
    operation = validator.operations[operation_id]
    path_params = {p.name: p.example for (where, _), p in operation.params.items() if where == "path"}

    @given(request_bodies(operation_id, service=service))
    def check(body: Any) -> None:
        check = validator.check_request(
            operation, path_params=path_params, body=encode(body), content_type="application/json",
            query="username=x" if operation_id == "checkUsernameAvailability" else "",
        )  # fmt: skip
        assert [v.message for v in check.rejected] == []

    check()


def test_nullable_widens_the_type_as_oas_3_0_3_reads_it() -> None:
    assert to_json_schema({"type": "string", "nullable": True, "x-errcode": "M_X"}) == {
        "type": ["string", "null"]
    }
    # the enum still decides: null is refused unless listed (openapi-schema-validator agrees)
    assert to_json_schema({"type": "string", "enum": ["a"], "nullable": True}) == {
        "type": ["string", "null"],
        "enum": ["a"],
    }
    # without a type in the same schema object, nullable means nothing
    typeless = {"allOf": [{"type": "object"}], "nullable": True}
    assert to_json_schema(typeless) == {"allOf": [{"type": "object"}]}


def test_edge_cases_come_up() -> None:
    """Bias check: empty, right-to-left and long strings, and unknown fields, all come up in 300 draws."""
    drawn: list[dict[str, Any]] = []
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}

    @settings(max_examples=300)
    @given(strategy_for(schema))
    def collect(value: dict[str, Any]) -> None:
        drawn.append(value)

    collect()
    names = {d["name"] for d in drawn}
    assert "" in names
    assert "שלום עולם" in names
    assert any(len(name) >= 300 for name in names)
    assert any(set(d) - {"name"} for d in drawn)


def test_union_variants_can_be_asked_for() -> None:
    with pytest.raises(KeyError, match="no variant"):
        response_bodies("listAgents", 200, variant="xml")
    with pytest.raises(KeyError, match="documents no 418"):
        response_bodies("listAgents", 418)


def test_object_counts_and_kept_out_properties_hold() -> None:
    """`minProperties` forces an unknown field only when the known ones cannot make it up; `maxProperties: 0`
    is `{}`; `not: {required: [...]}` keeps the named fields out, extra fields included."""
    sizes: set[int] = set()
    rooms = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "integer"}}
    detail = {
        "type": "object",
        "required": ["detail"],
        "properties": {"detail": {"type": "string"}, "trace_id": {"type": "string"}},
        "not": {"required": ["trace_id"]},
    }
    empty = {"type": "object", "additionalProperties": False, "maxProperties": 0}

    @settings(max_examples=200)
    @given(strategy_for(rooms), strategy_for(detail), strategy_for(empty))
    def check(room_map: dict[str, Any], error: dict[str, Any], nothing: dict[str, Any]) -> None:
        assert room_map
        assert all(isinstance(value, int) for value in room_map.values())
        assert "detail" in error
        assert "trace_id" not in error
        assert nothing == {}
        sizes.add(len(room_map))

    check()
    assert sizes == {1}  # one extra field at most is drawn, so exactly one here


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "string", "uniqueItems": True}, "uniqueItems"),
        ({"type": "object", "not": {"type": "string"}}, "`not` is drawn only as"),
        ({"type": "object", "required": ["a"], "not": {"required": ["a"]}}, "both required and kept out"),
        ({"type": "array", "items": False}, "not False"),
    ],
)
def test_a_schema_the_strategies_cannot_draw_is_refused_by_name(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(UnsupportedSchema, match=named):
        strategy_for(schema)
