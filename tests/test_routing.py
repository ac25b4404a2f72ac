"""Path templates, the mock's one routing decision per request, its handler table and its error bodies."""

from __future__ import annotations

import pytest

from contracts.validation import NoRoute, RouteMatch, fill_template, template_regex, validator_for
from mockgen.app import handlers_for
from mockgen.http.dialects import DIALECTS, error_reply
from mockgen.http.routing import Router
from mockgen.store.errors import ControlError, LettaError, MatrixError, UserInteractiveAuthRequired

AGENT = "agent-24018008-5ea1-4466-a8d1-127c48a64e70"


def test_template_regex_matches_one_segment_per_parameter() -> None:
    regex = template_regex("/rooms/{roomId}/state/{eventType}/{stateKey}")
    matched = regex.match("/rooms/%21a%3Ab/state/m.room.name/k")
    assert matched is not None
    assert matched.groupdict() == {"roomId": "%21a%3Ab", "eventType": "m.room.name", "stateKey": "k"}
    assert regex.match("/rooms/a/state/m.room.name/") is None
    assert regex.match("/rooms/a/b/state/t/k") is None
    assert template_regex("/rooms/{roomId}/state/{eventType}/{stateKey}", empty_values=True).match(
        "/rooms/a/state/t/"
    )


def test_fill_template_replaces_parameters_and_keeps_literals() -> None:
    assert (
        fill_template("/_matrix/client/{version}/rooms/{roomId}", str.upper)
        == "/_matrix/client/VERSION/rooms/ROOMID"
    )
    assert fill_template("/a.b/{x}", lambda _: "", literal=str.upper) == "/A.B/"


def _router(service: str) -> Router:
    return Router(
        validator=validator_for(service),
        dialect=DIALECTS[service],
        control_validator=validator_for("control"),
        control_dialect=DIALECTS["control"],
    )


def test_a_route_names_the_operation_and_decodes_path_parameters() -> None:
    route = _router("matrix").route("GET", "/_matrix/client/v3/rooms/%21a%3Amatrix.test/state")
    assert isinstance(route.found, RouteMatch)
    assert route.operation is not None
    assert (route.operation.operation_id, route.found.path_params["roomId"]) == (
        "getRoomState",
        "!a:matrix.test",
    )
    assert (route.control, route.needs_token, route.dialect) == (False, True, DIALECTS["matrix"])


def test_head_is_routed_to_the_get_operation() -> None:
    route = _router("matrix").route("HEAD", "/_matrix/client/v3/joined_rooms")
    assert route.operation is not None
    assert route.operation.operation_id == "getJoinedRooms"


def test_a_wrong_method_lists_the_allowed_ones() -> None:
    route = _router("matrix").route("DELETE", "/_matrix/client/v3/login")
    assert route.found == NoRoute("method", ("GET", "POST"))
    assert route.redirect is None


@pytest.mark.parametrize(
    ("path", "redirect", "needs_token"),
    [
        (f"/v1/agents/{AGENT}/", f"/v1/agents/{AGENT}", True),
        ("/v1/health", "/v1/health/", False),
        ("/v1/no-such-route/", None, True),
    ],
)
def test_letta_redirects_the_other_spelling_of_a_path(
    path: str, redirect: str | None, needs_token: bool
) -> None:
    route = _router("letta").route("GET", path)
    assert route.found == NoRoute("path")
    assert (route.redirect, route.needs_token) == (redirect, needs_token)


def test_matrix_and_the_control_api_do_not_redirect() -> None:
    assert _router("matrix").route("GET", "/_matrix/client/v3/joined_rooms/").redirect is None
    route = _router("letta").route("GET", "/_mock/health/")
    assert (route.control, route.redirect, route.dialect) == (True, None, DIALECTS["control"])


@pytest.mark.parametrize("service", ["letta", "matrix", "control"])
def test_connexion_resolves_a_handler_for_every_operation(service: str) -> None:
    assert set(handlers_for(service)) == set(validator_for(service).operations)


def test_store_errors_are_worded_by_their_service() -> None:
    matrix = error_reply(MatrixError(429, "M_LIMIT_EXCEEDED", "slow down", retry_after_ms=5))
    assert (matrix.status, matrix.body) == (
        429,
        {"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 5},
    )
    uia = error_reply(UserInteractiveAuthRequired({"session": "s", "flows": []}))
    assert (uia.status, uia.body) == (401, {"session": "s", "flows": []})
    letta = error_reply(LettaError(404, "Agent not found"))
    assert (letta.status, letta.body) == (404, {"detail": "Agent not found"})
    control = error_reply(ControlError(400, "bad fault"))
    assert (control.status, control.body) == (400, {"error": "bad fault"})
