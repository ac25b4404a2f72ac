"""The relay's journal: what was saved comes back after a restart, a record a crash cut short is ignored
whole (never half applied) and cut off so later records are read, a record that is whole but wrong is an
error, a failed append is followed by a whole new file, and the journal is rewritten when it outgrows its
state."""

from __future__ import annotations

import itertools
import json
import logging
import os
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
    await answered(store, "$a", "one")
    await handled(store, "$a", "s1")
    await answered(store, "$b", "two")
    store.state.outbox["$b"].refused += 1
    await store.save()
    await store.save()  # nothing changed: nothing written
    await store.close()
    assert store.writes == 4
    # A snapshot, then one line per save with only what changed.
    assert len((tmp_path / RELAY_FILE).read_bytes().splitlines()) == 4
    again = RelayStore(tmp_path).load()
    assert (again.since, list(again.handled)) == ("s1", ["$a"])
    assert list(again.outbox) == ["$b"]
    assert again.outbox["$b"].replies == [reply("two")]
    assert again.outbox["$b"].refused == 1


async def test_a_torn_last_record_is_ignored_whole_and_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RelayStore(tmp_path)
    await answered(store, "$a", "one")
    await handled(store, "$a", "s1")
    await answered(store, "$b", "two")
    await store.close()
    path = tmp_path / RELAY_FILE
    whole = path.read_bytes()
    last = whole.rstrip(b"\n").rfind(b"\n") + 1
    for cut in (len(whole) - 1, last + 20, last + 9):  # no newline; half the payload; only the checksum
        path.write_bytes(whole[:cut])
        with caplog.at_level(logging.WARNING):
            state = RelayStore(tmp_path).load()
        # The outbox entry of the torn record is not there at all; the records before it are.
        assert (state.since, list(state.handled), state.outbox) == ("s1", ["$a"], {})
        assert "torn" in caplog.text
        assert path.read_bytes() == whole[:last]
    # What is saved after the cut is read by the next restart (not hidden behind the torn bytes).
    store = RelayStore(tmp_path)
    store.load()
    await answered(store, "$c", "three")
    await store.close()
    assert list(RelayStore(tmp_path).load().outbox) == ["$c"]


async def test_a_zeroed_record_hides_the_records_after_it(tmp_path: Path) -> None:
    """A crash between two appends that were never synced can leave the first as zeros and the second
    whole: neither was acknowledged, so both are dropped."""
    store = RelayStore(tmp_path)
    await answered(store, "$a", "one")
    await answered(store, "$b", "two")
    await answered(store, "$c", "three")
    await store.close()
    path = tmp_path / RELAY_FILE
    lines = path.read_bytes().splitlines(keepends=True)  # the snapshot (with $a), $b, $c
    lines[1] = b"\0" * (len(lines[1]) - 1) + b"\n"
    path.write_bytes(b"".join(lines))
    assert list(RelayStore(tmp_path).load().outbox) == ["$a"]


@pytest.mark.parametrize(
    "content",
    [
        b"",  # no snapshot at all
        b'00000000 {"since":"s1"}\n',  # a checksum that does not match is no snapshot either
    ],
)
def test_a_journal_without_a_whole_snapshot_is_an_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / RELAY_FILE).write_bytes(content)
    with pytest.raises(StoreError, match="snapshot"):
        RelayStore(tmp_path).load()


async def test_a_whole_record_of_the_wrong_shape_is_an_error_not_a_torn_one(tmp_path: Path) -> None:
    store = RelayStore(tmp_path)
    await answered(store, "$a", "one")
    await store.close()
    path = tmp_path / RELAY_FILE
    with path.open("ab") as out:
        out.write(relay_state._encode({"handled": "$b"}))
    with pytest.raises(StoreError, match="handled must be a list"):
        RelayStore(tmp_path).load()


async def test_after_a_failed_append_the_next_save_writes_a_whole_new_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RelayStore(tmp_path)
    await answered(store, "$a", "one")
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(StoreError, match="No space left"):
        await answered(store, "$b", "two")
    monkeypatch.undo()
    await handled(store, "$a", "s1")
    await store.close()
    state = RelayStore(tmp_path).load()
    assert (state.since, list(state.handled), list(state.outbox)) == ("s1", ["$a"], ["$b"])
    assert (tmp_path / RELAY_FILE).read_bytes().count(b"\n") == 1  # one snapshot, the torn bytes gone


async def test_the_journal_is_rewritten_when_it_outgrows_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_state, "COMPACT_SLACK", 2000)
    store = RelayStore(tmp_path)
    sizes = []
    for n in range(200):
        await answered(store, f"$e{n}", f"reply {n}")
        await handled(store, f"$e{n}", f"s{n}")
        sizes.append((tmp_path / RELAY_FILE).stat().st_size)
    await store.close()
    # It shrank back to a snapshot several times, and never grew past the state plus the slack by much.
    assert sum(1 for before, after in itertools.pairwise(sizes) if after < before) >= 3
    snapshot = len(relay_state._encode({"snapshot": store.state.to_json()}))
    assert max(sizes) < 2 * snapshot + 2000 + 1000
    state = RelayStore(tmp_path).load()
    assert (state.since, list(state.handled), state.outbox) == ("s199", [f"$e{n}" for n in range(200)], {})


def test_a_version_1_state_is_taken_over_once(tmp_path: Path) -> None:
    """A relay that saved relay.json before the journal: its token, marks and outbox carry over, so an
    upgraded bridge answers nothing again."""
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
    again = RelayStore(tmp_path).load()  # from the journal now
    assert (again.since, list(again.handled), again.outbox) == (
        state.since,
        list(state.handled),
        state.outbox,
    )


def test_an_unreadable_version_1_state_stops_the_relay(tmp_path: Path) -> None:
    (tmp_path / OLD_RELAY_FILE).write_text("{not json")
    with pytest.raises(StoreError, match=r"relay\.json"):
        RelayStore(tmp_path).load()
