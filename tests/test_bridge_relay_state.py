"""The relay's state in SQLite: what was saved comes back after a restart; a save is one transaction, so a
failed one leaves the last save whole and the next save writes its changes again; the newest handled ids
are kept; the file is private; a relay.json of the relay before SQLite is taken over once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from letta_matrix_reference.bridge import relay_state
from letta_matrix_reference.bridge.errors import StoreError
from letta_matrix_reference.bridge.relay_state import OLD_RELAY_FILE, RELAY_FILE, Pending, RelayStore


def reply(text: str) -> dict[str, object]:
    return {"msgtype": "m.text", "body": text}


async def answered(store: RelayStore, event_id: str, text: str) -> None:
    store.state.outbox[event_id] = Pending("!room:test", "agent-1", [reply(text)])
    await store.save()


async def handled(store: RelayStore, event_id: str, since: str) -> None:
    store.state.mark_handled(event_id)
    store.state.since = since
    await store.save()


async def test_a_restart_finds_what_each_save_wrote(tmp_path: Path) -> None:
    store = RelayStore(tmp_path)
    assert store.load().since is None
    await answered(store, "$a", "one")
    await handled(store, "$a", "s1")
    await answered(store, "$b", "two")
    store.state.outbox["$b"].refused += 1
    await store.save()
    await store.save()  # nothing changed: nothing written
    await store.close()
    assert store.writes == 4
    again = RelayStore(tmp_path).load()
    assert (again.since, list(again.handled)) == ("s1", ["$a"])
    assert list(again.outbox) == ["$b"]
    assert again.outbox["$b"].replies == [reply("two")]
    assert again.outbox["$b"].refused == 1
    assert (tmp_path / RELAY_FILE).stat().st_mode & 0o777 == 0o600


async def test_a_failed_save_leaves_the_last_one_whole_and_the_next_writes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RelayStore(tmp_path)
    await answered(store, "$a", "one")
    # The token goes last in a transaction: failing there, after the outbox and the marks, must undo them.
    monkeypatch.setattr(relay_state, "_PUT_TOKEN", "INSERT INTO no_such_table VALUES (?)")
    with pytest.raises(StoreError, match="cannot write the relay state"):
        await handled(store, "$a", "s1")
    assert (RelayStore(tmp_path).load().since, list(RelayStore(tmp_path).load().outbox)) == (None, ["$a"])
    monkeypatch.undo()
    await store.save()  # the same changes, again
    await store.close()
    state = RelayStore(tmp_path).load()
    assert (state.since, list(state.handled), state.outbox) == ("s1", ["$a"], {})


async def test_only_the_newest_handled_ids_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay_state, "HANDLED_LIMIT", 5)
    store = RelayStore(tmp_path)
    for n in range(12):
        await handled(store, f"$e{n}", f"s{n}")
    assert [store.state.is_handled(f"$e{n}") for n in (6, 7, 11)] == [False, True, True]
    await store.close()
    with sqlite3.connect(tmp_path / RELAY_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM handled").fetchone() == (5,)
    state = RelayStore(tmp_path).load()
    assert (state.since, list(state.handled)) == ("s11", [f"$e{n}" for n in range(7, 12)])


async def test_a_database_of_another_version_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / RELAY_FILE) as db:
        db.execute("PRAGMA user_version=7")
    with pytest.raises(StoreError, match="version 7"):
        RelayStore(tmp_path).load()


async def test_a_stored_entry_that_is_not_a_pending_turn_is_an_error(tmp_path: Path) -> None:
    store = RelayStore(tmp_path)
    await answered(store, "$a", "one")
    await store.close()
    with sqlite3.connect(tmp_path / RELAY_FILE) as db:
        db.execute("UPDATE outbox SET pending = '{\"room_id\": 5}'")
    with pytest.raises(StoreError, match="room_id, agent_id and replies"):
        RelayStore(tmp_path).load()


def test_a_version_1_state_is_taken_over_once(tmp_path: Path) -> None:
    """A relay that saved relay.json before SQLite: its token, marks and outbox carry over, so an upgraded
    bridge answers nothing again."""
    old = {
        "version": 1,
        "since": "s42",
        "handled": ["$a", "$b"],
        "outbox": {
            "$c": {"room_id": "!r:x", "agent_id": "agent-1", "replies": [{"body": "hi"}], "refused": 1}
        },
    }
    (tmp_path / OLD_RELAY_FILE).write_text(json.dumps(old))
    state = RelayStore(tmp_path).load()
    assert (state.since, list(state.handled)) == ("s42", ["$a", "$b"])
    assert state.outbox["$c"] == Pending("!r:x", "agent-1", [{"body": "hi"}], 1)
    assert not (tmp_path / OLD_RELAY_FILE).exists()
    again = RelayStore(tmp_path).load()  # from the database now
    assert (again.since, list(again.handled), again.outbox) == (
        state.since,
        list(state.handled),
        state.outbox,
    )


def test_an_unreadable_version_1_state_stops_the_relay_every_time(tmp_path: Path) -> None:
    (tmp_path / OLD_RELAY_FILE).write_text("{not json")
    for _ in range(2):  # no empty database is left behind to be trusted on the next start
        with pytest.raises(StoreError, match=r"relay\.json"):
            RelayStore(tmp_path).load()
