"""Priority lanes: a command waits while a higher lane of its shard has commands not yet served.

Each lane is its own topic and agent, so Kafka fetches them side by side; the gate makes the
order. Before serving a command of lane L on partition p, the executor waits while any higher
lane's partition p has a backlog: committed records beyond the next offset that lane will
serve (known once it served a command here; before that, its group's committed offset, read
once per assignment). Its highwater says whether there may be any; the lanes are written in
transactions, so offsets up to it may hold only commit markers, and a peek tells
(agents/record_peek.py). The wait is bounded per command (AUTOPILOT_LANE_MAX_WAIT_SECONDS), so
a critical lane that never drains slows the others down to one command per bound instead of
starving them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from agents.record_peek import Peek
from topics.commands import Priority

logger = logging.getLogger(__name__)

ORDER = (Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM, Priority.LOW)
POLL_SECONDS = 0.005
# Longest wait for the broker to say where the higher lanes of a shard stand.
LOOKUP_SECONDS = 5.0
# A backlog this small may be only commit markers: `backlog` peeks before counting it.
MARKERS_PEEKED = 3

# (topic, partition) -> the next offset to consume, or None when the group has none committed.
CommittedLookup = Callable[[list[tuple[str, int]]], Awaitable[Mapping[tuple[str, int], int | None]]]
# The highwater the consumer has seen (None before its first fetch of the partition) ...
HighwaterLookup = Callable[[str, int], int | None]
# ... and the broker's answer, asked once per assignment for a partition not fetched yet.
LatestLookup = Callable[[list[tuple[str, int]]], Awaitable[Mapping[tuple[str, int], int]]]
# (topic, partition, start, end) -> the first committed record in [start, end).
PeekLookup = Callable[[str, int, int, int], Awaitable[Peek]]


class LaneGate:
    """Which lanes of which shard still have commands to serve, and waiting for them."""

    def __init__(
        self,
        topics: Mapping[Priority, str],
        highwater: HighwaterLookup,
        committed: CommittedLookup,
        latest: LatestLookup,
        peek: PeekLookup,
        max_wait_seconds: float,
    ) -> None:
        self._topics = topics
        self._highwater = highwater
        self._committed = committed
        self._latest = latest
        self._peek = peek
        self._max_wait = max_wait_seconds
        self._next: dict[tuple[str, int], int] = {}
        self._asked: dict[tuple[str, int], int] = {}
        # A committed record known to wait in a lane: no need to peek again until it is served.
        self._waiting: dict[tuple[str, int], int] = {}

    def served(self, lane: Priority, partition: int, offset: int) -> None:
        """Record that the lane served the command at this offset."""
        self._next[(self._topics[lane], partition)] = offset + 1

    def forget(self, partition: int) -> None:
        """The shard moved away: what was known of its lanes is stale."""
        for known in (self._next, self._asked, self._waiting):
            for key in [key for key in known if key[1] == partition]:
                del known[key]

    async def wait_turn(self, lane: Priority, partition: int) -> float:
        """Wait while a higher lane of the shard has a backlog (bounded); returns seconds waited."""
        higher = [self._topics[h] for h in ORDER[: ORDER.index(lane)]]
        if not higher:
            return 0.0
        unknown = [(topic, partition) for topic in higher if (topic, partition) not in self._next]
        if unknown:
            try:
                # Bounded: during a rebalance these lookups can hang, and the lane with them.
                async with asyncio.timeout(max(self._max_wait, LOOKUP_SECONDS)):
                    committed = await self._committed(unknown)
                    # Until the consumer fetched them, the broker says how far these lanes go.
                    self._asked.update(await self._latest(unknown))
            except TimeoutError:
                logger.warning(
                    "lane positions not known in time, serving without waiting",
                    extra={"lane": lane.value, "partition": partition},
                )
                return 0.0
            for key in unknown:
                # A lane with nothing committed starts at its earliest offset: treat as 0.
                self._next.setdefault(key, committed.get(key) or 0)
        started = time.monotonic()
        while await self._backlog(higher, partition):
            waited = time.monotonic() - started
            if waited >= self._max_wait:
                logger.info(
                    "lane wait bound reached",
                    extra={"lane": lane.value, "partition": partition, "waited": waited},
                )
                return waited
            await asyncio.sleep(POLL_SECONDS)
        return time.monotonic() - started

    async def backlog(self, partitions: list[int]) -> dict[Priority, int]:
        """Per lane, the commands waiting on these shards (committed, not yet served), for
        metrics. A gap of a few offsets may be commit markers only: it is peeked at; a larger
        one is counted as it is (a marker per transaction among many commands is noise)."""
        keys = [(self._topics[lane], p) for lane in ORDER for p in partitions]
        unknown = [key for key in keys if key not in self._next]
        committed: Mapping[tuple[str, int], int | None] = {}
        latest: Mapping[tuple[str, int], int] = {}
        if unknown:
            async with asyncio.timeout(LOOKUP_SECONDS):
                committed = await self._committed(unknown)
                latest = await self._latest(unknown)
        waiting = dict.fromkeys(ORDER, 0)
        for lane in ORDER:
            topic = self._topics[lane]
            for partition in partitions:
                key = (topic, partition)
                start = self._next.get(key, committed.get(key) or 0)
                end = self._highwater(topic, partition)
                if end is None:
                    end = latest.get(key, self._asked.get(key, start))
                if end - start > MARKERS_PEEKED:
                    waiting[lane] += end - start
                elif end > start:
                    first = (await self._peek(topic, partition, start, end)).first
                    waiting[lane] += 0 if first is None else end - first
        return waiting

    async def _backlog(self, topics: list[str], partition: int) -> bool:
        for topic in topics:
            key = (topic, partition)
            served = self._next.get(key)
            if served is None:
                # Forgotten while waiting: the shard was revoked, nothing to wait for here.
                return False
            highwater = self._highwater(topic, partition)
            if highwater is None:
                highwater = self._asked.get(key)
            if highwater is None or highwater <= served:
                continue
            waiting = self._waiting.get(key)
            if waiting is not None and waiting >= served:
                return True
            peek = await self._peek(topic, partition, served, highwater)
            if self._next.get(key) != served:
                return True  # served or forgotten meanwhile: look again
            if peek.first is not None:
                self._waiting[key] = peek.first
                return True
            # Only offsets no reader sees: the lane has served all it has.
            self._next[key] = max(served, peek.reached)
        return False
