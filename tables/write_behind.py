"""Workspace state cached per partition and written to the table once per flush, not per signal.

Why: a Faust table write costs ~130 µs here (one changelog record through Faust's per-message
producer path; docs/benchmarks.md), so writing every workspace on every batch would cap the
worker at a few thousand signals/s. The aggregate agent holds back the acks of the records it
folded until their states are flushed, so committed offsets never run ahead of stored state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from core.windows import WorkspaceState, initialize, upcast

Value = TypeVar("Value")

# Keys of shard-wide values (never a workspace id, which starts with a letter or digit).
SHARD_KEY_PREFIX = "~"
# Keys of the shards' read marks (tables/read_marks.py): written last at each flush.
READ_MARK_PREFIX = f"{SHARD_KEY_PREFIX}read."


# Writes a key like the table does, and returns what resolves once its changelog record is
# on the broker (the aggregate makes it from Faust's send_changelog).
WriteLast = Callable[[str, bytes], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Flushed:
    """How many values a flush wrote, and what resolves once they are all on the broker (None
    without a `write_last`, or when nothing was written)."""

    count: int
    stored: Awaitable[Any] | None


class WriteBehindStates:
    """States per partition: read through from the table, written back on flush."""

    def __init__(
        self,
        table: MutableMapping[str, bytes],
        max_cached: int,
        write_last: WriteLast | None = None,
    ) -> None:
        self._table = table
        self._max_cached = max_cached
        self._write_last = write_last
        # Per partition: workspace id → its state, and shard-wide values under their own keys.
        self._states: dict[int, dict[str, Any]] = {}
        self._dirty: dict[int, set[str]] = {}

    def get(self, partition: int, workspace_id: str) -> WorkspaceState:
        """The workspace's state: cached, else stored, else a fresh one."""
        states = self._states.setdefault(partition, {})
        state = states.get(workspace_id)
        if state is None:
            stored = self._table.get(workspace_id)
            state = initialize() if stored is None else upcast(orjson.loads(stored))
            states[workspace_id] = state
        return state

    def get_value(self, partition: int, key: str, initial: Callable[[], Value]) -> Value:
        """A shard-wide value kept beside the workspaces (its key is not a workspace id)."""
        states = self._states.setdefault(partition, {})
        value = states.get(key)
        if value is None:
            stored = self._table.get(key)
            value = initial() if stored is None else orjson.loads(stored)
            states[key] = value
        return value

    def peek(self, partition: int, workspace_id: str) -> WorkspaceState | None:
        """The workspace's latest state (cached, else stored) without caching it; None if unseen.

        For readers outside the stream (the HTTP view): the cache is newer than the table
        between flushes, and a read must not change what the agent holds.
        """
        state: WorkspaceState | None = self._states.get(partition, {}).get(workspace_id)
        if state is not None:
            return state
        stored = self._table.get(workspace_id)
        return None if stored is None else upcast(orjson.loads(stored))

    def put(
        self, partition: int, workspace_id: str, state: WorkspaceState | Mapping[str, Any]
    ) -> None:
        """Replace the workspace's state (or a shard-wide value); written at the next flush."""
        self._states.setdefault(partition, {})[workspace_id] = state
        self._dirty.setdefault(partition, set()).add(workspace_id)

    def dirty_count(self, partition: int) -> int:
        """How many workspaces of the partition wait to be written."""
        return len(self._dirty.get(partition, ()))

    def flush(self, partition: int) -> Flushed:
        """Write the partition's changed states (one write each).

        The last write goes through `write_last`, when given: writes to a changelog partition
        land in order, so once it is on the broker, so is every write before it. (Faust's own
        producer flush returns when its buffer stays busy for 0.1 s, before all of it was sent:
        records acked after it could be committed ahead of their states.)
        """
        dirty = self._dirty.pop(partition, set())
        states = self._states.get(partition, {})
        # Shard-wide values first, then workspaces, then the read mark. A crash can cut a
        # flush short, and writes to a changelog partition land in order: a stored workspace
        # state then implies the shard values stored with it (the reverse is harmless: the
        # platform cap's slots are kept by decision id, so a workspace decided again keeps its
        # slot), and a stored read mark implies the stored states hold what it says was read
        # (the reverse only counts a record read again as a duplicate; nothing is lost).
        keys = sorted(dirty, key=_flush_order)
        write_last = self._write_last
        last = keys.pop() if keys and write_last is not None else None
        for key in keys:
            self._table[key] = orjson.dumps(states[key])
        stored = None
        if write_last is not None and last is not None:
            stored = write_last(last, orjson.dumps(states[last]))
        if len(states) > self._max_cached:
            # Everything is clean right after a flush, so dropping the cache loses nothing.
            states.clear()
        return Flushed(len(dirty), stored)

    def forget(self, partition: int) -> None:
        """Drop a partition's cache (it moved to another worker); unflushed work is redone there."""
        self._states.pop(partition, None)
        self._dirty.pop(partition, None)


def _flush_order(key: str) -> int:
    if key.startswith(READ_MARK_PREFIX):
        return 2
    return 0 if key.startswith(SHARD_KEY_PREFIX) else 1
