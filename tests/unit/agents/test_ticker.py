"""The ticker: which ticks it writes for the shards it serves, against a real shard store and
a clock it is given."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.ticker import NoSweepError, Ticker
from core.rules import parse_policy
from engine.partition_store import PartitionStore
from engine.shard_timers import ShardTimers
from topics.control import Tick

POLICY = parse_policy(
    """
[[schedules]]
id = "minutely"
every_seconds = 60

[[rules]]
id = "sweep-queue"
on = ["sweep:minutely"]
when = [{ fact = "queue.pending", op = ">", value = 50 }]
action = "rebalance_queue"
priority = 9
cooldown_seconds = 0
""",
    "test",
)
T = 1_796_000_000 - 1_796_000_000 % 60  # a period start


class Served:
    """Shard 3 served by this worker, over a real store."""

    def __init__(self, tmp_path: Path) -> None:
        self.stores = {3: PartitionStore(tmp_path / "3", "test.changelog", 3)}
        self.why_not: str | None = None

    @property
    def owned(self) -> list[int]:
        return sorted(self.stores)

    def store(self, partition: int) -> PartitionStore | None:
        return self.stores.get(partition)

    def not_ready(self) -> str | None:
        return self.why_not

    def acted_on(self, tick: Tick) -> None:
        """The shard acted on the tick, as the stage does, and committed."""
        store = self.stores[tick.shard]
        ShardTimers(store).take_tick(tick.schedule, int(tick.due_at.timestamp()))
        store.apply(None)


class Clock:
    def __init__(self) -> None:
        self.now = float(T)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path)
    yield served
    for store in served.stores.values():
        store.close()


def ticker_for(served: Served, clock: Clock, sent: list[tuple[int, Tick]]) -> Ticker:
    async def send(shard: int, value: bytes) -> None:
        sent.append((shard, Tick.model_validate_json(value)))

    return Ticker(POLICY, served, send, clock)


async def test_a_shard_that_never_ran_the_schedule_ticks_from_the_next_period_once(
    served: Served,
) -> None:
    """Given a shard that never ran the schedule, then nothing is written for the period under
    way; when the next begins, one tick of that period is written, not again while the shard
    has not acted on it, and the period after gets its own."""
    clock, sent = Clock(), []
    ticker = ticker_for(served, clock, sent)
    clock.now = T + 30
    assert await ticker.tick() == []

    clock.now = T + 60
    (first,) = await ticker.tick()
    clock.now = T + 61
    assert await ticker.tick() == []
    served.acted_on(first)
    clock.now = T + 119
    assert await ticker.tick() == []
    clock.now = T + 120
    (second,) = await ticker.tick()

    assert [(s, t.schedule, t.due_at.timestamp()) for s, t in sent] == [
        (3, "minutely", T + 60),
        (3, "minutely", T + 120),
    ]
    assert first.tick_id != second.tick_id
    assert first.requested_by is None


async def test_a_new_owner_writes_the_same_tick_again_and_catches_up_a_missed_period(
    served: Served,
) -> None:
    """Given a shard that acted on the period at T, then a new worker (a restart, a failover)
    at T+60.5 writes that period's tick with the same id another writer would give it; after
    three periods without any owner it writes only the latest, within its catch-up; later
    than that it writes nothing until the next period begins."""
    clock, sent = Clock(), []
    served.acted_on(Tick(tick_id="t0", schedule="minutely", shard=3, due_at=_at(T)))
    clock.now = T + 60.5
    (one,) = await ticker_for(served, clock, sent).tick()
    (again,) = await ticker_for(served, clock, []).tick()
    assert one.tick_id == again.tick_id

    clock.now = T + 240 + 30
    (latest,) = await ticker_for(served, clock, sent).tick()
    assert latest.due_at.timestamp() == T + 240

    served.acted_on(Tick(tick_id="t0", schedule="minutely", shard=3, due_at=_at(T + 300)))
    clock.now = T + 600 - 1  # the 540 period was due 59 s ago: within its catch-up of 60 s
    assert len(await ticker_for(served, clock, []).tick()) == 1


async def test_nothing_is_written_while_the_engine_is_not_ready(served: Served) -> None:
    """Given an engine still restoring, then no tick is written (its shards' committed state
    is not yet known)."""
    clock, sent = Clock(), []
    served.acted_on(Tick(tick_id="t0", schedule="minutely", shard=3, due_at=_at(T)))
    served.why_not = "restoring the state of 1 partition(s)"
    clock.now = T + 61

    assert await ticker_for(served, clock, sent).tick() == []


async def test_an_operators_run_ticks_every_served_shard_now_with_its_name(
    served: Served,
) -> None:
    """Given an operator's run, then each served shard gets a tick of the sweep now, named by
    the operator, each run with an id of its own; a schedule the policy lacks is refused, naming the
    ones it has."""
    clock, sent = Clock(), []
    clock.now = T + 12.7
    ticker = ticker_for(served, clock, sent)

    (tick,) = await ticker.run_once(None, "alice")
    (other,) = await ticker.run_once("minutely", "alice")

    assert (tick.shard, tick.schedule, tick.requested_by) == (3, "minutely", "alice")
    assert tick.due_at.timestamp() == T + 12
    assert tick.tick_id != other.tick_id
    with pytest.raises(NoSweepError, match=r"no sweep schedule weekly \(its schedules: minutely\)"):
        await ticker.run_once("weekly", "alice")


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def test_a_run_of_two_sweeps_gives_each_its_own_id(served: Served) -> None:
    """Given a policy with two sweeps, then a run of both gives each sweep its own id (a shard
    takes one operator request per id, so one id for both would lose the second)."""
    two = parse_policy(_TWO_SWEEPS, "test")
    sent: list[tuple[int, Tick]] = []

    async def send(shard: int, value: bytes) -> None:
        sent.append((shard, Tick.model_validate_json(value)))

    ticks = await Ticker(two, served, send, Clock()).run_once(None, "alice")

    assert sorted(t.schedule for t in ticks) == ["hourly", "minutely"]
    assert len({t.tick_id for t in ticks}) == 2


_TWO_SWEEPS = """
[[schedules]]
id = "minutely"
every_seconds = 60

[[schedules]]
id = "hourly"
cron = "0 * * * *"

[[rules]]
id = "sweep-queue"
on = ["sweep:minutely", "sweep:hourly"]
action = "rebalance_queue"
priority = 9
cooldown_seconds = 0
"""
