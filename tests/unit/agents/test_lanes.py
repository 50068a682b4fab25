"""The lane gate: a lower lane waits for the higher lanes of its shard, boundedly."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from agents.lanes import LaneGate
from agents.record_peek import Peek
from topics.commands import Priority

TOPICS = {lane: f"commands.{lane.value}" for lane in Priority}


def gate(
    highwaters: dict[tuple[str, int], int],
    max_wait: float = 5.0,
    unseen: frozenset[int] = frozenset(),
) -> LaneGate:
    """A gate over lanes holding a committed record at every offset but the `unseen` ones
    (commit markers)."""

    async def committed(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int | None]:
        return dict.fromkeys(keys)

    async def latest(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        return {key: highwaters.get(key, 0) for key in keys}

    async def peek(topic: str, partition: int, start: int, end: int) -> Peek:
        first = next((o for o in range(start, end) if o not in unseen), None)
        return Peek(first, end if first is None else first)

    return LaneGate(TOPICS, lambda t, p: highwaters.get((t, p)), committed, latest, peek, max_wait)


async def test_a_lower_lane_waits_until_the_higher_lane_is_served() -> None:
    """Given two critical commands waiting on shard 0, when the low lane asks for its turn,
    then it waits until the critical lane served both, and not for the bound."""
    lanes = gate({("commands.critical", 0): 2})

    async def serve_critical() -> None:
        for offset in (0, 1):
            await asyncio.sleep(0.05)
            lanes.served(Priority.CRITICAL, 0, offset)

    serving = asyncio.create_task(serve_critical())
    waited = await asyncio.wait_for(lanes.wait_turn(Priority.LOW, 0), timeout=2)
    await serving

    assert 0.08 <= waited < 1.0


async def test_the_wait_is_bounded_when_the_higher_lane_never_drains() -> None:
    """Given a critical backlog nobody serves, then the low lane goes on after the bound."""
    lanes = gate({("commands.critical", 0): 5}, max_wait=0.2)

    waited = await asyncio.wait_for(lanes.wait_turn(Priority.LOW, 0), timeout=2)

    assert 0.2 <= waited < 1.0


async def test_a_shard_revoked_during_the_wait_ends_the_wait() -> None:
    """Given the low lane waiting on a critical backlog of shard 3, when the shard is revoked
    (forget), then the wait ends at once instead of failing on what was forgotten."""
    lanes = gate({("commands.critical", 3): 5})
    waiting = asyncio.create_task(lanes.wait_turn(Priority.LOW, 3))
    await asyncio.sleep(0.05)

    lanes.forget(3)

    waited = await asyncio.wait_for(waiting, timeout=1)
    assert waited < 0.5


async def test_the_critical_lane_never_waits() -> None:
    """Given backlogs everywhere, then the critical lane's turn is immediate."""
    lanes = gate({(topic, 0): 9 for topic in TOPICS.values()})

    assert await lanes.wait_turn(Priority.CRITICAL, 0) == 0.0


async def test_a_lane_whose_last_offsets_are_commit_markers_holds_no_one_up() -> None:
    """Given a critical lane that served its records 0 and 1, each followed by its
    transaction's commit marker (offsets 2 and 3 up to the highwater 4), when the low lane asks
    for its turn, then it goes at once: markers are not a backlog."""
    lanes = gate({("commands.critical", 0): 4}, unseen=frozenset({1, 3}))
    lanes.served(Priority.CRITICAL, 0, 0)
    lanes.served(Priority.CRITICAL, 0, 2)

    waited = await asyncio.wait_for(lanes.wait_turn(Priority.LOW, 0), timeout=2)

    assert waited < 0.05


async def test_the_backlog_counts_commands_not_served_and_not_commit_markers() -> None:
    """Given shard 0's critical lane with 5 offsets of which 2 are served, its high lane
    holding only a commit marker (offset 0), its low lane 10 offsets never served (counted as
    they are: past a few offsets, a marker is noise), and shard 1 empty, then the backlog is 3
    critical, 0 high, 10 low."""
    lanes = gate(
        {("commands.critical", 0): 5, ("commands.high", 0): 1, ("commands.low", 0): 10},
        unseen=frozenset({0}),
    )
    lanes.served(Priority.CRITICAL, 0, 1)

    backlog = await lanes.backlog([0, 1])

    assert backlog == {
        Priority.CRITICAL: 3,
        Priority.HIGH: 0,
        Priority.MEDIUM: 0,
        Priority.LOW: 10,
    }
