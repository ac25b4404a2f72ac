"""The Letta state store on its own."""

from __future__ import annotations

import pytest

from mockgen.store.errors import LettaError
from mockgen.store.letta import USER_ID, LettaStore


def _ids(page: list[dict[str, object]]) -> list[object]:
    return [agent["id"] for agent in page]


def test_newest_first_with_cursors() -> None:
    store = LettaStore(seed=3, clock=iter(range(1_795_000_000, 1_795_000_100)).__next__)
    a, b, c = (store.create(name).id for name in ("a", "b", "c"))
    assert _ids(store.list_agents()) == [c, b, a]
    assert _ids(store.list_agents(ascending=True)) == [a, b, c]
    assert _ids(store.list_agents(after=c, limit=1)) == [b]
    assert _ids(store.list_agents(before=a)) == [c, b]
    assert _ids(store.list_agents(after=c, before=a)) == [b]
    assert _ids(store.list_agents(limit=0)) == [c, b, a]
    assert [agent["created_at"] for agent in store.list_agents(ascending=True)] == [
        "2026-11-18T11:06:40",
        "2026-11-18T11:06:41",
        "2026-11-18T11:06:42",
    ]  # fmt: skip  (1_795_000_000 is 2026-11-18T11:06:40Z; Letta on SQLite keeps seconds, no zone)


def test_filters() -> None:
    store = LettaStore(seed=3)
    store.create("alpha", tags=["x", "y"])
    store.create("beta", tags=["y"])
    assert [a["name"] for a in store.list_agents(name="beta")] == ["beta"]
    assert [a["name"] for a in store.list_agents(tags=["x", "y"], match_all_tags=True)] == ["alpha"]
    assert [a["name"] for a in store.list_agents(tags=["x", "y"])] == ["beta", "alpha"]
    assert [a["name"] for a in store.list_agents(query_text="ALP")] == ["alpha"]


def test_ids_and_errors() -> None:
    store = LettaStore(seed=3)
    with pytest.raises(LettaError) as malformed:
        store.retrieve("nope")
    assert malformed.value.status == 400
    with pytest.raises(LettaError) as missing:
        store.retrieve("agent-00000000-0000-4000-8000-000000000000")
    assert missing.value.status == 404
    agent = store.create("x")
    assert store.retrieve(agent.id) == agent.to_json()
    store.delete(agent.id)
    with pytest.raises(LettaError):
        store.delete(agent.id)


def test_messages_are_the_newest_oldest_first() -> None:
    store = LettaStore(seed=3)
    agent = store.create("talker")
    everything = store.list_messages(agent.id, limit=100)
    assert len(everything) == 4  # the greeting's send_message return is hidden beside its call
    assert store.list_messages(agent.id, limit=1) == everything[-1:]
    assert store.list_messages(agent.id, after=everything[0]["id"], limit=100) == everything[1:]
    turn = everything[1]["id"]
    assert everything[2]["id"] == turn  # reasoning and the assistant message share their id
    # after the greeting's row, its send_message return is listed: its call is not on the page
    after = store.list_messages(agent.id, after=turn, limit=100)
    assert [m["message_type"] for m in after] == ["tool_return_message", "user_message"]
    assert after[1] == everything[3]


def test_agent_id_with_a_trailing_newline_passes_the_check_and_is_not_found() -> None:
    # Letta's AGENT_ID_PATTERN ends in `$`, which matches before a final newline (probe LD87): 404, not 400.
    store = LettaStore(seed=3)
    agent = store.create("x")
    with pytest.raises(LettaError) as missing:
        store.retrieve(agent.id + "\n")
    assert (missing.value.status, missing.value.detail) == (404, f"Agent with ID {agent.id}\n not found")


@pytest.mark.parametrize(
    ("agent_id", "status"),
    [
        ("AGENT-3c9ae2df-ba53-4278-882b-7116be60b407", 404),  # the prefix is checked case-insensitively
        ("agent-3C9AE2DF-BA53-4278-882B-7116BE60B407", 404),  # so is the hex
        ("agent-3c9ae2df-ba53-1278-882b-7116be60b407", 400),  # a uuid1: the version nibble must be 4
        ("agent-3c9ae2df-ba53-4278-082b-7116be60b407", 400),  # the variant nibble must be 8-b
        ("not-an-id", 400),
    ],
)
def test_only_retrieve_checks_the_id_format(agent_id: str, status: int) -> None:
    store = LettaStore(seed=3)
    with pytest.raises(LettaError) as retrieved:
        store.retrieve(agent_id)
    assert retrieved.value.status == status
    # The other routes look the id up as sent: 404, each in its own words (probes LD01m-LD23).
    with pytest.raises(LettaError) as listed:
        store.list_messages(agent_id)
    assert (listed.value.status, listed.value.detail) == (404, f"Agent with ID {agent_id} not found")
    with pytest.raises(LettaError) as modified:
        store.modify(agent_id, {})
    assert modified.value.status == 404
    assert modified.value.detail.startswith(
        f"Agent not found with id='['{agent_id}']', access level in ['read']"
    )
    with pytest.raises(LettaError) as deleted:
        store.delete(agent_id)
    assert deleted.value.detail == f"Agent agent_id={agent_id} not found for user_id={USER_ID}."


def test_a_message_cursor_naming_no_message_is_404() -> None:
    store = LettaStore(seed=3)
    agent = store.create("x")
    named = "message-00000000-0000-4000-8000-000000000000"
    with pytest.raises(LettaError) as before:
        store.list_messages(agent.id, before=named)
    assert (before.value.status, before.value.detail) == (
        404,
        f"No message found with id '{named}' for agent '{agent.id}'.",
    )
    named = "garbage"
    with pytest.raises(LettaError) as missing:
        store.list_messages(agent.id, after=named)
    assert (missing.value.status, missing.value.detail) == (
        404,
        f"No message found with id '{named}' for agent '{agent.id}'.",
    )


def test_modify_answers_a_snapshot_taken_under_the_lock() -> None:
    store = LettaStore(seed=3)
    agent = store.create("x")
    first = store.modify(agent.id, {"name": "first"})
    store.modify(agent.id, {"name": "second"})
    assert first["name"] == "first"
    assert store.retrieve(agent.id)["name"] == "second"
