"""The ticker: writes each schedule's ticks onto the shards this worker serves.

Once a second, for every shard the engine has restored and reads, and every schedule of the
policy (core/schedules.py): when the schedule's latest period began after the last tick the
shard acted on (in its committed state) and not longer ago than the schedule's catch-up, one
tick for that period goes onto the shard's partition of the `control` topic (a shard that never
ran the schedule waits for the next period to begin). The shard acts on a period's first tick
only; so a tick written twice (this worker's write was not yet read when the shard moved, and
its new owner writes it again) acts once, and a period that began while no worker owned the
shard still runs when one does (once, however many periods were missed).

The clock is read here, never in the stage: the tick carries its period's start, which is the
event time of everything the shard decides on it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from core.rules import Policy
from core.schedules import Schedule
from engine.partition_store import PartitionStore
from engine.shard_timers import ShardTimers
from topics.control import Tick
from topics.ids import stable_id

logger = logging.getLogger(__name__)

# How often the ticker looks at the clock (a tick is at most this late, plus the stage's lag).
TICK_CHECK_SECONDS = 1.0


class ServedShards(Protocol):
    """What the ticker reads of the engine."""

    @property
    def owned(self) -> list[int]: ...

    def store(self, partition: int) -> PartitionStore | None: ...

    def not_ready(self) -> str | None: ...


class NoSweepError(ValueError):
    """A run was asked for a schedule the policy does not have."""


class Ticker:
    """Writes ticks for the served shards (see the module)."""

    def __init__(
        self,
        policy: Policy,
        shards: ServedShards,
        send: Callable[[int, bytes], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.shards = shards
        self._send = send
        self._clock = clock
        # (shard, schedule) → the period this worker last wrote a tick for.
        self._written: dict[tuple[int, str], int] = {}
        # (shard, schedule) → the period under way when this worker first served a shard that
        # never ran the schedule.
        self._first_seen: dict[tuple[int, str], int] = {}

    async def tick(self) -> list[Tick]:
        """Write the ticks that are due now; returns them."""
        if not self.policy.tick_schedules or self.shards.not_ready() is not None:
            return []
        now = self._clock()
        written = []
        for shard in self.shards.owned:
            store = self.shards.store(shard)
            if store is None:
                continue
            for schedule in self.policy.tick_schedules:
                tick = self._due(schedule, shard, store, now)
                if tick is None:
                    continue
                await self._send(shard, tick.model_dump_json().encode())
                self._written[shard, schedule.id] = int(tick.due_at.timestamp())
                written.append(tick)
        return written

    async def run_once(self, schedule_id: str | None, by: str) -> list[Tick]:
        """An operator's run of one sweep (or of every sweep) on each served shard, now."""
        schedules = [s for s in self.policy.schedules if schedule_id in (None, s.id)]
        if not schedules:
            known = ", ".join(s.id for s in self.policy.schedules) or "none"
            raise NoSweepError(
                f"the policy has no sweep schedule {schedule_id or ''}".rstrip()
                + f" (its schedules: {known}); add [[schedules]] to the policy file"
            )
        due_at = datetime.fromtimestamp(int(self._clock()), UTC)
        # One id per sweep run on every shard: its sweep.completed entries are one run.
        run_ids = {schedule.id: f"run-{uuid.uuid4().hex}" for schedule in schedules}
        ticks = [
            Tick(
                tick_id=run_ids[schedule.id],
                schedule=schedule.id,
                shard=shard,
                due_at=due_at,
                requested_by=by,
            )
            for shard in self.shards.owned
            for schedule in schedules
        ]
        for tick in ticks:
            await self._send(tick.shard, tick.model_dump_json().encode())
        return ticks

    def _due(
        self, schedule: Schedule, shard: int, store: PartitionStore, now: float
    ) -> Tick | None:
        period = schedule.period_start(now)
        if now - period > schedule.catch_up:
            return None
        last = ShardTimers.last_tick(store, schedule.id)
        if last is None:
            # A shard that never ran the schedule starts with the first period that begins
            # while it is served, not with one already under way (a new deployment at 10:30
            # does not sweep at once for 10:00).
            first = self._first_seen.setdefault((shard, schedule.id), period)
            if period <= first:
                return None
        elif period <= last:
            return None
        if self._written.get((shard, schedule.id)) == period:
            return None  # written, not yet acted on
        if last is not None and schedule.period_start(period - 1) > last:
            logger.warning(
                "schedule periods missed while no worker served the shard; running the latest",
                extra={"schedule": schedule.id, "shard": shard, "last": last, "period": period},
            )
        return Tick(
            tick_id=stable_id("tick", schedule.id, shard, period),
            schedule=schedule.id,
            shard=shard,
            due_at=datetime.fromtimestamp(period, UTC),
        )
