"""The bridge's parts that need no server: its settings, the mapping file, the agent user names."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from letta_matrix_reference import bridge
from letta_matrix_reference.bridge import BridgeConfig, ConfigurationError, StoreError
from letta_matrix_reference.bridge.config import REQUIRED
from letta_matrix_reference.bridge.store import (
    MAPPING_FILE,
    AgentRecord,
    BridgeState,
    DataDirLock,
    MappingFile,
    Persister,
    prepare_data_dir,
)
from letta_matrix_reference.bridge.users import agent_localpart, user_id_for

ENV = {
    "LETTA_URL": "http://letta.example:8283/",
    "LETTA_TOKEN": "letta-secret",
    "MATRIX_URL": "https://matrix.example",
    "MATRIX_SERVER_NAME": "example.org",
    "MATRIX_ADMIN_USER": "root",
    "MATRIX_ADMIN_PASSWORD": "admin-secret",
    "MATRIX_BOT_USER": "bot",
    "MATRIX_BOT_PASSWORD": "bot-secret",
    "BRIDGE_DATA_DIR": "/var/lib/bridge",
}


# -- settings


def test_settings_come_from_the_environment() -> None:
    config = BridgeConfig.from_sources(env=ENV)
    assert config.letta_url == "http://letta.example:8283"  # one spelling: no trailing slash
    assert (config.server_name, config.data_dir) == ("example.org", Path("/var/lib/bridge"))
    assert (config.space_name, config.page_limit, config.concurrency) == ("Letta Agents", 50, 8)


def test_explicit_settings_win_over_the_environment() -> None:
    config = BridgeConfig.from_sources(
        {"server_name": "other.org", "concurrency": 3, "space_name": None}, ENV
    )
    assert (config.server_name, config.concurrency, config.space_name) == ("other.org", 3, "Letta Agents")


def test_every_missing_setting_is_named_with_both_ways_to_give_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        BridgeConfig.from_sources({"letta_url": "http://x"}, env={"MATRIX_URL": "http://y"})
    message = str(raised.value)
    for setting in REQUIRED:
        if setting.name in ("letta_url", "matrix_url"):
            assert f"{setting.flag} (" not in message
        else:
            assert f"{setting.flag} (or {setting.env})" in message


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"letta_url": "letta:8283"}, "http:// or https://"),
        ({"concurrency": 0}, "concurrency must be positive"),
        ({"request_timeout": -1.0}, "request_timeout must be positive"),
        ({"request_timeout": float("nan")}, "request_timeout must be a finite number"),  # no timeout at all
        ({"poll_interval": float("inf")}, "poll_interval must be a finite number"),
        ({"matrix_url": "http://"}, "with a host"),  # would become "http:", refused only by the first request
        ({"matrix_url": "http://matrix.example:99999"}, "Port out of range"),
        ({"letta_url": "https://me:hunter2@letta.example"}, "must not contain a user name or password"),
        ({"backoff_base": 5.0, "backoff_cap": 1.0}, "backoff_cap"),
        ({"space_name": " "}, "space_name"),
        ({"bogus": 1}, "unknown settings: bogus"),
        ({"admin_password": " "}, "--admin-password"),
    ],
)
def test_bad_settings_are_refused(override: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(complaint)) as raised:
        BridgeConfig.from_sources(override, ENV)
    assert "hunter2" not in str(raised.value)


def test_the_config_never_shows_its_secrets() -> None:
    shown = repr(BridgeConfig.from_sources(env=ENV))
    assert "example.org" in shown
    assert not {"letta-secret", "admin-secret", "bot-secret"} & set(re.findall(r"[\w-]+", shown))


def test_no_host_token_password_or_server_name_is_written_into_the_bridge() -> None:
    """The code this bridge replaces had a private IP, a token and a domain in it. Only the mock target
    knows the mock's accounts, and it takes them from the mock itself."""
    suspicious = re.compile(
        r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|localhost|matrix\.test|mock-letta-token|syt_|\.org\b|\.com\b"
    )
    package = Path(bridge.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "target.py":
            continue
        found = suspicious.findall(path.read_text())
        assert found == [], f"{path.name}: {found}"


# -- agent users


def test_agent_localparts_come_from_the_id_only() -> None:
    assert (
        agent_localpart("agent-24018008-5ea1-4466-a8d1-127c48a64e70")
        == "letta_240180085ea14466a8d1127c48a64e70"
    )
    assert agent_localpart("agent-24018008-5EA1-4466-A8D1-127C48A64E70") == agent_localpart(
        "agent-24018008-5ea1-4466-a8d1-127c48a64e70"
    )
    odd = agent_localpart("not a uuid / at all")
    assert re.fullmatch(r"letta_[0-9a-f]{32}", odd)
    assert odd == agent_localpart("not a uuid / at all")
    assert user_id_for("Bot", "example.org") == "@bot:example.org"
    assert user_id_for("@bot:elsewhere.org", "example.org") == "@bot:elsewhere.org"


# -- the mapping file


def record(n: int, **fields: Any) -> AgentRecord:
    return AgentRecord(
        agent_id=f"agent-{n}",
        name=f"Agent {n}",
        user_id=f"@letta_{n}:example.org",
        password=f"pw-{n}",
        **fields,
    )


def state_of(*records: AgentRecord) -> BridgeState:
    return BridgeState(space_id="!space", agents={r.agent_id: r for r in records})


def save(mapping: MappingFile, state: BridgeState) -> None:
    mapping.write(mapping.encode(state))


def test_the_mapping_round_trips(tmp_path: Path) -> None:
    state = state_of(
        record(1, registered=True, joined=("@a:x", "@b:x"), room_id="!r"), record(2, status="removed")
    )
    state.devices["@a:x"] = "DEVICE"
    mapping = MappingFile(tmp_path / MAPPING_FILE)
    save(mapping, state)
    loaded = MappingFile(tmp_path / MAPPING_FILE).load()
    assert loaded == state
    assert json.loads((tmp_path / MAPPING_FILE).read_text()) == state.to_json()
    assert json.loads((tmp_path / MAPPING_FILE).read_text())["version"] == 1


def test_a_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    state = MappingFile(tmp_path / MAPPING_FILE).load()
    assert (state.space_id, state.agents) == (None, {})
    assert re.fullmatch(r"[0-9a-f]{32}", state.bridge_id)


def test_only_changed_records_are_encoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from letta_matrix_reference.bridge import store

    state = state_of(*(record(n) for n in range(100)))
    mapping = MappingFile(tmp_path / MAPPING_FILE)
    mapping.encode(state)
    encoded: list[Any] = []
    real = store._dumps

    def counting(value: Any) -> str:
        encoded.append(value)
        return real(value)

    monkeypatch.setattr(store, "_dumps", counting)
    state.agents["agent-7"].room_id = "!new"
    state.agents["agent-9"].joined = ("@bot:example.org",)
    data = mapping.encode(state)
    agents = [value for value in encoded if isinstance(value, dict) and "user_id" in value]
    assert sorted(a["user_id"] for a in agents) == ["@letta_7:example.org", "@letta_9:example.org"]
    assert json.loads(data) == state.to_json()


def test_a_record_replaced_through_add_is_encoded_again(tmp_path: Path) -> None:
    state = state_of(record(1), record(2))
    mapping = MappingFile(tmp_path / MAPPING_FILE)
    mapping.encode(state)
    state.add(record(2, room_id="!replacement"))
    assert json.loads(mapping.encode(state))["agents"]["agent-2"]["room_id"] == "!replacement"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"version": 2, "bridge_id": "b", "agents": {}}', "has version 2; this bridge reads version 1 only"),
        ('{"bridge_id": "b", "agents": {}}', "has version None"),
        ('{"version": 1, "agents": {}}', ".bridge_id must be a non-empty string"),
        ('{"version": 1, "bridge_id": "b", "agents": []}', ".agents must be a JSON object"),
        (
            '{"version": 1, "bridge_id": "b", "agents": {"agent-1": {"user_id": "@u:x", '
            '"status": "active"}}}',
            "agents['agent-1'].password must be a non-empty string",
        ),
        (
            '{"version": 1, "bridge_id": "b", "agents": {"a": {"user_id": "@u:x", "password": "p", '
            '"status": "gone"}}}',
            "status must be 'active' or 'removed'",
        ),
        (
            '{"version": 1, "bridge_id": "b", "agents": {"a": {"user_id": "@u:x", "password": "p", '
            '"status": "active", "joined": "@bot:x"}}}',
            "joined must be a list of strings",
        ),
    ],
)
def test_a_file_that_cannot_be_read_is_an_error_never_a_fresh_start(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / MAPPING_FILE
    path.write_text(content)
    with pytest.raises(StoreError, match=re.escape(complaint)):
        MappingFile(path).load()
    assert path.read_text() == content  # and it is left as it was


def test_the_file_is_private_from_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        seen.append(os.stat(src).st_mode & 0o777)  # the complete temporary file, before it takes the name
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    old_umask = os.umask(0)
    try:
        mapping = prepare_data_dir(tmp_path / "data")
        save(mapping, state_of(record(1)))
    finally:
        os.umask(old_umask)
    assert seen == [0o600]
    assert (tmp_path / "data" / MAPPING_FILE).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_crash_mid_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / MAPPING_FILE
    mapping = MappingFile(path)
    before = state_of(record(1), record(2))
    save(mapping, before)
    old = path.read_bytes()

    def crash(*args: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(StoreError, match="Input/output error"):
        save(mapping, state_of(record(1), record(2), record(3)))
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert MappingFile(path).load() == before
    assert list(tmp_path.glob("*.tmp")) == []


def test_leftovers_of_an_interrupted_write_are_removed_only_by_their_owner(tmp_path: Path) -> None:
    path = tmp_path / MAPPING_FILE
    save(MappingFile(path), state_of(record(1)))
    leftover = tmp_path / f".{MAPPING_FILE}.abc123.tmp"
    leftover.write_text('{"half": ')
    assert len(MappingFile(path).load().agents) == 1
    assert leftover.exists()  # a reader may be watching another process's write in progress
    MappingFile(path).remove_leftovers()
    assert list(tmp_path.glob(".*.tmp")) == []


def test_one_bridge_per_data_dir(tmp_path: Path) -> None:
    first, second = DataDirLock(tmp_path), DataDirLock(tmp_path)
    first.acquire()
    with pytest.raises(StoreError, match="another bridge is using"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


async def test_commits_that_come_together_share_a_write(tmp_path: Path) -> None:
    mapping = MappingFile(tmp_path / MAPPING_FILE)
    state = state_of()
    persister = Persister(mapping, state)

    async def change_and_commit(n: int) -> None:
        state.add(record(n))
        await persister.commit()
        # Back from commit: this change is on disk.
        assert f"agent-{n}" in json.loads((tmp_path / MAPPING_FILE).read_text())["agents"]

    await asyncio.gather(*(change_and_commit(n) for n in range(50)))
    # The first commit writes its own change; the 49 that came while it wrote share the second write.
    assert persister.writes == 2
    await persister.commit()  # nothing new: nothing written
    assert persister.writes == 2


async def test_a_cancelled_commit_keeps_the_lock_until_its_write_is_on_disk(tmp_path: Path) -> None:
    """A write runs in a thread, which a cancellation cannot stop. If the lock went with the cancellation,
    a newer write could finish first and then be replaced by the older one."""
    path = tmp_path / MAPPING_FILE
    mapping = MappingFile(path)
    state = state_of()
    persister = Persister(mapping, state)
    entered, release = threading.Event(), threading.Event()
    written: list[bytes] = []
    real_write = mapping.write

    def write(data: bytes) -> None:
        if not written:
            entered.set()
            assert release.wait(10), "the test never released the first write"
        written.append(data)
        real_write(data)

    mapping.write = write  # type: ignore[method-assign]
    state.add(record(1))
    older = asyncio.create_task(persister.commit())
    assert await asyncio.to_thread(entered.wait, 10)
    older.cancel()
    state.add(record(2))
    newer = asyncio.create_task(persister.commit())
    for _ in range(10):
        await asyncio.sleep(0)  # every chance to run: neither may finish while the first write is blocked
    assert not older.done()
    assert not newer.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(older, 10)
    await asyncio.wait_for(newer, 10)
    assert len(written) == 2
    assert set(json.loads(path.read_bytes())["agents"]) == {"agent-1", "agent-2"}
    assert path.read_bytes() == written[-1]
