"""Workspace states cached per partition and written back on flush: stored states of an earlier
version are read in the current shape, and the HTTP view's reads never change the cache."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from core import windows
from core.windows import SourcePosition, WindowConfig
from tables.read_marks import initial_mark, mark_key
from tables.write_behind import WriteBehindStates
from topics.signals import signal_from

V1_STATE = (Path(__file__).parents[1] / "fixtures" / "workspace_state_v1.json").read_bytes()
E0 = 1_704_067_200


def folded_state() -> windows.WorkspaceState:
    """A version 2 state after one heartbeat at T0."""
    signal = signal_from(
        {
            "id": "h",
            "workspace_id": "ws-1",
            "type": "heartbeat",
            "occurred_at": datetime(2024, 1, 1, tzinfo=UTC),
        }
    )
    state = windows.initialize()
    windows.add(state, [signal], SourcePosition("signals", 0, 0), WindowConfig(60))
    return state


def test_a_stored_version_1_state_is_read_as_the_current_version() -> None:
    """Given a table holding a version 1 state (written before the upgrade), when the agent
    reads the workspace, then it gets the upcast current (version 3) state."""
    states = WriteBehindStates({"ws-1": V1_STATE}, max_cached=10)

    state = states.get(0, "ws-1")

    assert state == windows.upcast(orjson.loads(V1_STATE))
    assert state["v"] == 3


def test_an_unknown_workspace_starts_from_a_fresh_state() -> None:
    """Given an empty table, then get gives the initial state and peek gives None."""
    states = WriteBehindStates({}, max_cached=10)

    assert states.peek(0, "ws-1") is None
    assert states.get(0, "ws-1") == windows.initialize()


def test_peek_reads_a_stored_state_upcast_without_caching_it() -> None:
    """Given a version 1 state in the table, when the view peeks at it, then it sees the
    version 2 shape, and nothing is cached or marked to be written."""
    table = {"ws-1": V1_STATE}
    states = WriteBehindStates(table, max_cached=10)

    seen = states.peek(0, "ws-1")

    assert seen == windows.upcast(orjson.loads(V1_STATE))
    assert states.dirty_count(0) == 0
    assert states.flush(0).count == 0
    assert table == {"ws-1": V1_STATE}


def test_peek_sees_the_cached_state_before_it_is_flushed() -> None:
    """Given a state put but not yet flushed, then peek answers with it (newer than the
    table), and a flush then writes it to the table as JSON."""
    table: dict[str, bytes] = {"ws-1": V1_STATE}
    states = WriteBehindStates(table, max_cached=10)
    state = folded_state()

    states.put(0, "ws-1", state)

    assert states.peek(0, "ws-1") is state
    assert table["ws-1"] == V1_STATE
    assert states.flush(0).count == 1
    assert orjson.loads(table["ws-1"]) == state


def test_a_flushed_state_reads_back_equal_after_the_cache_is_dropped() -> None:
    """Given a state flushed and the partition's cache forgotten (a rebalance), when the
    workspace is read again, then the state from the table equals the one flushed."""
    table: dict[str, bytes] = {}
    states = WriteBehindStates(table, max_cached=10)
    state = folded_state()
    states.put(3, "ws-1", state)
    states.flush(3)

    states.forget(3)

    assert states.get(3, "ws-1") == state
    assert states.get(3, "ws-1")["watermark"] == E0


class RecordingTable(dict[str, bytes]):
    """A table that remembers the order of its writes (a changelog partition keeps it)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)


def test_a_flush_writes_the_shard_values_before_any_workspace() -> None:
    """Given 100 workspaces changed around a shard-wide value, when flushed, then the
    shard-wide value is written first: a flush cut short by a crash can store it without a
    workspace, never a workspace (with decisions counted under the cap) without it."""
    table = RecordingTable()
    states = WriteBehindStates(table, max_cached=1_000)
    workspaces = [f"ws-{n:03d}" for n in range(100)]
    for workspace_id in workspaces[:50]:
        states.put(0, workspace_id, folded_state())
    quota = states.get_value(0, "~quota.0", lambda: {"counts": {}})
    states.put(0, "~quota.0", quota)
    for workspace_id in workspaces[50:]:
        states.put(0, workspace_id, folded_state())

    assert states.flush(0).count == 101

    assert table.writes[0] == "~quota.0"
    assert sorted(table.writes[1:]) == workspaces


def test_a_flush_writes_the_read_mark_after_every_workspace() -> None:
    """Given workspaces changed around a shard's read mark and its quota, when flushed, then the
    read mark is written last: a flush cut short stores states without the mark (a record read
    again counts as a duplicate), never the mark without the states (a record would be lost)."""
    table = RecordingTable()
    states = WriteBehindStates(table, max_cached=1_000)
    mark = states.get_value(0, mark_key(0), initial_mark)
    states.put(0, mark_key(0), mark)
    states.put(0, "ws-a", folded_state())
    states.put(0, "~quota.0", {"counts": {}})
    states.put(0, "ws-b", folded_state())

    assert states.flush(0).count == 4

    assert table.writes[0] == "~quota.0"
    assert sorted(table.writes[1:3]) == ["ws-a", "ws-b"]
    assert table.writes[3] == "~read.0"


async def test_the_last_write_of_a_flush_goes_through_write_last_and_is_awaited() -> None:
    """Given a write_last that stores like the table and hands back a receipt, when a flush
    writes two workspaces and the read mark, then the mark (last) went through write_last and
    the flush's `stored` is its receipt; the workspaces went to the table before it."""
    table = RecordingTable()
    receipts: list[str] = []

    async def receipt(key: str) -> str:
        receipts.append(key)
        return key

    def write_last(key: str, value: bytes) -> Awaitable[str]:
        table[key] = value
        return receipt(key)

    states = WriteBehindStates(table, max_cached=1_000, write_last=write_last)
    states.put(0, mark_key(0), states.get_value(0, mark_key(0), initial_mark))
    states.put(0, "ws-a", folded_state())
    states.put(0, "ws-b", folded_state())

    flushed = states.flush(0)

    assert flushed.count == 3
    assert flushed.stored is not None
    assert await flushed.stored == "~read.0"
    assert sorted(table.writes[:2]) == ["ws-a", "ws-b"] and table.writes[2] == "~read.0"
    assert states.flush(0).stored is None  # nothing left to write


def test_without_write_last_a_flush_has_nothing_to_await() -> None:
    """A plain mapping is written directly: nothing to await."""
    states = WriteBehindStates({}, max_cached=10)
    states.put(0, "ws-a", folded_state())

    assert states.flush(0).stored is None
