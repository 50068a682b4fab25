"""Noticing records Faust skipped, so that they are fetched again instead of never carried out.

Across a rebalance, Faust's stream drops the records it had already fetched when their
generation no longer matches, and acks them (faust-streaming #216/#221: "so the lag does not
grow"). For an executor it would be a command nobody ever carries out. Observed in
tests/integration/test_executors.py: a worker joining mid-run received offsets 2 and then 13 of
a lane partition, never 3 to 12.

A record past the next expected offset means records were skipped, unless the offsets between
hold no record a `read_committed` reader sees (the lanes are written in transactions: commit
markers and aborted records take offsets too), which a peek tells (agents/record_peek.py). The
guard says where to seek back to; records below the expected offset (copies after a seek) pass.
When every record after the gap was skipped too, no later record shows it: so a partition that
delivered nothing for a while although it has committed records past the expected offset is
also a gap.

One seek per gap: the records already fetched past it (Faust buffers thousands) are passed over,
unacked, until the awaited record comes back, or for `retry_seconds` if it does not. Seeking
again for each of them made seek storms of hundreds a second, and every seek raced the consumer
thread (agents/refetch.py now seeks in that thread).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from agents.record_peek import Peek

# (topic, partition) -> the group's committed offset (the next to consume), None if none.
CommittedLookup = Callable[[list[tuple[str, int]]], Awaitable[Mapping[tuple[str, int], int | None]]]
# (topic, partition, start, end) -> the first committed record in [start, end).
PeekLookup = Callable[[str, int, int, int], Awaitable[Peek]]


@dataclass(frozen=True, slots=True)
class Gap:
    """Records before this one were skipped: seek back to `seek_to`, or, when it is None (that
    seek is under way), pass this record over unacked: it comes again after the gap."""

    seek_to: int | None


class OffsetGuard:
    """The next offset each partition's stream should deliver, per assignment."""

    def __init__(self, committed: CommittedLookup, peek: PeekLookup, retry_seconds: float) -> None:
        self._committed = committed
        self._peek = peek
        self._retry_seconds = retry_seconds
        self._next: dict[tuple[str, int], int] = {}
        self._seen: dict[tuple[str, int], float] = {}
        # Partitions sought back, and when: their records past the gap are passed over.
        self._seeking: dict[tuple[str, int], float] = {}

    async def gap_before(self, topic: str, partition: int, offset: int) -> Gap | None:
        """The gap before this record, if records before it were skipped; else None."""
        key = (topic, partition)
        now = self._seen[key] = time.monotonic()
        expected = self._next.get(key)
        if expected is None:
            # First record since the assignment: it should be the committed offset.
            expected = (await self._committed([key])).get(key)
            if expected is None:
                self._next[key] = offset + 1
                return None
        if offset > expected:
            peek = await self._peek(topic, partition, expected, offset)
            if peek.first is None:
                # Nothing a reader sees lies between (markers, aborted records): no gap.
                self._seeking.pop(key, None)
                self._next[key] = offset + 1
                return None
            self._next[key] = expected
            sought = self._seeking.get(key)
            if sought is not None and now - sought < self._retry_seconds:
                return Gap(None)
            self._seeking[key] = now
            return Gap(expected)
        if offset == expected:
            self._seeking.pop(key, None)
        self._next[key] = max(expected, offset + 1)
        return None

    async def stalled(
        self, topic: str, partition: int, highwater: int | None, idle_seconds: float
    ) -> int | None:
        """The offset to seek back to if the partition has records past the expected offset
        but delivered none for `idle_seconds`; else None."""
        key = (topic, partition)
        if highwater is None or time.monotonic() - self._seen.get(key, 0.0) < idle_seconds:
            return None
        expected = self._next.get(key)
        if expected is None:
            expected = (await self._committed([key])).get(key)
        if expected is None or highwater <= expected:
            return None
        peek = await self._peek(topic, partition, expected, highwater)
        if peek.first is None:
            # Only offsets no reader sees (a transaction's marker last): nothing was skipped.
            self._next[key] = max(expected, peek.reached)
            self._seen[key] = time.monotonic()
            return None
        self._seen[key] = self._seeking[key] = time.monotonic()
        return expected

    def forget(self, partition: int) -> None:
        """The partition was revoked: its next assignment starts from its committed offset."""
        for known in (self._next, self._seen, self._seeking):
            for key in [key for key in known if key[1] == partition]:
                del known[key]
