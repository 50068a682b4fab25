"""The aggregate's stream gaps: a record past the expected offset has the skipped ones read
again first; a partition silent below its highwater is fetched again; copies pass."""

from __future__ import annotations

from typing import Any

from agents.stream_gaps import StreamGaps

T = "signals"


def gaps_with(starts: dict[tuple[str, int], int]) -> tuple[StreamGaps, list[tuple[int, int]]]:
    """Gaps over a partition whose records are their offsets; the ranges it was asked to read."""
    asked: list[tuple[int, int]] = []

    async def read(topic: str, partition: int, start: int, end: int) -> list[Any]:
        asked.append((start, end))
        return list(range(start, end))

    async def start_of(topic: str, partition: int) -> int:
        return starts[(topic, partition)]

    return StreamGaps(read, start_of), asked


async def test_consecutive_records_and_copies_need_nothing_read() -> None:
    """Given a partition that starts at 4, when 4, 5, 6 and then a copy of 5 arrive, then
    nothing was skipped and nothing is read."""
    gaps, asked = gaps_with({(T, 0): 4})

    got = [await gaps.skipped_before(T, 0, offset) for offset in (4, 5, 6, 5)]

    assert got == [(4, []), (5, []), (6, []), (7, [])]
    assert asked == []


async def test_a_jump_reads_the_skipped_records_once() -> None:
    """Given 4 and 5 delivered, when 9 arrives, then 6..8 are read again, and 10 follows on."""
    gaps, asked = gaps_with({(T, 0): 4})
    await gaps.skipped_before(T, 0, 4)
    await gaps.skipped_before(T, 0, 5)

    assert await gaps.skipped_before(T, 0, 9) == (6, [6, 7, 8])
    assert await gaps.skipped_before(T, 0, 10) == (10, [])
    assert asked == [(6, 9)]


async def test_the_first_record_after_an_assignment_is_checked_against_its_start() -> None:
    """Given a partition whose state holds everything before 3, when the first record is 5,
    then 3 and 4 are read again; another partition starting at its first record reads none."""
    gaps, asked = gaps_with({(T, 0): 3, (T, 1): 0})

    assert await gaps.skipped_before(T, 0, 5) == (3, [3, 4])
    assert await gaps.skipped_before(T, 1, 0) == (0, [])
    assert asked == [(3, 5)]


async def test_a_silent_partition_below_its_highwater_is_stalled_once_per_wait() -> None:
    """Given a partition that delivered up to 6, then with highwater 9 it is stalled back to 7
    (not again at once); with highwater 7 (all delivered) it is not; an unseen one is not."""
    gaps, _ = gaps_with({(T, 0): 6, (T, 1): 0})
    await gaps.skipped_before(T, 0, 6)

    assert gaps.stalled(T, 0, 7, idle_seconds=0.0) is None
    assert gaps.stalled(T, 0, 9, idle_seconds=0.0) == 7
    assert gaps.stalled(T, 0, 9, idle_seconds=60.0) is None
    assert gaps.stalled(T, 0, None, idle_seconds=0.0) is None
    assert gaps.stalled(T, 1, 9, idle_seconds=0.0) is None


async def test_a_revoked_partition_starts_again_from_its_start() -> None:
    """Given a partition that delivered up to 8, when it is revoked and assigned again, then
    its first record is checked against its start again, not against 9."""
    gaps, asked = gaps_with({(T, 0): 2})
    await gaps.skipped_before(T, 0, 8)
    gaps.forget(T, 0)

    assert await gaps.skipped_before(T, 0, 2) == (2, [])
    assert gaps.stalled(T, 0, 20, idle_seconds=60.0) is None
    assert asked == [(2, 8)]  # the first assignment's jump only


async def test_a_tail_read_some_other_way_moves_the_expected_offset_on() -> None:
    """Given a partition stalled at 7 whose tail up to 12 was read some other way, then it is
    no longer stalled, and a copy of 10 or the next record 12 need nothing read."""
    gaps, asked = gaps_with({(T, 0): 6})
    await gaps.skipped_before(T, 0, 6)
    gaps.delivered(T, 0, 12)

    assert gaps.stalled(T, 0, 12, idle_seconds=0.0) is None
    assert await gaps.skipped_before(T, 0, 10) == (12, [])
    assert await gaps.skipped_before(T, 0, 12) == (12, [])
    assert asked == []
