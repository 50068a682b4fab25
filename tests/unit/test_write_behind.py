"""Workspace states cached per partition and written back on flush: stored states of an earlier
version are read in the current shape, and the HTTP view's reads never change the cache."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from tables import windows
from tables.windows import SourcePosition, WindowConfig
from tables.write_behind import WriteBehindStates
from topics.signals import signal_from

V1_STATE = (Path(__file__).parent / "fixtures" / "workspace_state_v1.json").read_bytes()
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
    assert states.flush(0) == 0
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
    assert states.flush(0) == 1
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
