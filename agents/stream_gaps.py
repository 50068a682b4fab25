"""Where each of the aggregate's partitions should go on, so records Faust skipped are noticed.

Faust's stream can skip records around a rebalance (agents/gap_reader.py says how, and why it
matters). Within an assignment the aggregate's records come in offset order, so a record past
the next expected offset shows a gap: the records in it are read again and folded first. Where
a partition starts after an assignment is known from the stored state's read mark, else the
group's commit. Skipped records at a partition's end show in no later record, so a partition
below its highwater that delivered nothing for a while is also a gap, fetched again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

# (topic, partition, start, end) -> the records at start <= offset < end, in order.
ReadRange = Callable[[str, int, int, int], Awaitable[list[Any]]]
# (topic, partition) -> where the partition's stream starts after an assignment.
StartOf = Callable[[str, int], Awaitable[int]]


class StreamGaps:
    """The next offset each partition's stream should deliver, and when it last delivered."""

    def __init__(self, read: ReadRange, start_of: StartOf) -> None:
        self._read = read
        self._start_of = start_of
        self._next: dict[tuple[str, int], int] = {}
        self._delivered: dict[tuple[str, int], float] = {}

    async def skipped_before(
        self, topic: str, partition: int, offset: int
    ) -> tuple[int, list[Any]]:
        """The offset this record was expected at, and the records skipped before it (read
        again; usually none). Records below the expected offset are copies: nothing skipped."""
        key = (topic, partition)
        self._delivered[key] = time.monotonic()
        expected = self._next.get(key)
        if expected is None:
            expected = await self._start_of(topic, partition)
        self._next[key] = max(expected, offset + 1)
        if offset <= expected:
            return expected, []
        return expected, await self._read(topic, partition, expected, offset)

    def stalled(
        self, topic: str, partition: int, highwater: int | None, idle_seconds: float
    ) -> int | None:
        """The offset to fetch the partition again from, if its highwater is past what it
        delivered and it delivered nothing for `idle_seconds`; else None. Not again at once:
        the fetch gets its time."""
        key = (topic, partition)
        expected = self._next.get(key)
        if expected is None or highwater is None or highwater <= expected:
            return None  # nothing delivered since the assignment: Faust starts at the commit
        now = time.monotonic()
        if now - self._delivered.get(key, 0.0) < idle_seconds:
            return None
        self._delivered[key] = now
        return expected

    def delivered(self, topic: str, partition: int, end: int) -> None:
        """The records before `end` were read some other way (a stalled tail, read again)."""
        key = (topic, partition)
        self._next[key] = max(self._next.get(key, end), end)
        self._delivered[key] = time.monotonic()

    def forget(self, topic: str, partition: int) -> None:
        """The partition was revoked: its next assignment starts where its state does."""
        self._next.pop((topic, partition), None)
        self._delivered.pop((topic, partition), None)
