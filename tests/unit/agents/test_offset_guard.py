"""The offset guard: records a stream skipped are noticed, so they can be fetched again."""

from __future__ import annotations

from collections.abc import Mapping

from agents.offset_guard import Gap, OffsetGuard
from agents.record_peek import Peek

T = "commands.medium"


def guard_with(
    committed: dict[tuple[str, int], int | None],
    retry_seconds: float = 60.0,
    unseen: frozenset[int] = frozenset(),
) -> OffsetGuard:
    """A guard whose partitions hold a committed record at every offset but the `unseen` ones
    (a transaction's commit markers, an aborted transaction's records)."""

    async def lookup(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int | None]:
        return {key: committed.get(key) for key in keys}

    async def peek(topic: str, partition: int, start: int, end: int) -> Peek:
        first = next((o for o in range(start, end) if o not in unseen), None)
        return Peek(first, end if first is None else first)

    return OffsetGuard(lookup, peek, retry_seconds)


async def test_consecutive_records_and_copies_pass() -> None:
    """Given a partition assigned at committed offset 2, when 2, 3, 4 arrive and then a copy
    of 3 (after a seek), then none is a gap."""
    guard = guard_with({(T, 0): 2})

    assert [await guard.gap_before(T, 0, offset) for offset in (2, 3, 4, 3)] == [None] * 4


async def test_a_record_past_the_expected_offset_is_a_gap_until_the_missing_ones_come() -> None:
    """Given offsets 2 and 3 delivered, when 13 arrives, then seek back to 4, once: the records
    already fetched past the gap are passed over; and when 4..14 come again they pass."""
    guard = guard_with({(T, 0): 2})
    await guard.gap_before(T, 0, 2)
    await guard.gap_before(T, 0, 3)

    assert await guard.gap_before(T, 0, 13) == Gap(4)
    assert [await guard.gap_before(T, 0, offset) for offset in (14, 15, 16)] == [Gap(None)] * 3
    assert [await guard.gap_before(T, 0, offset) for offset in range(4, 17)] == [None] * 13


async def test_offsets_holding_no_record_are_not_a_gap() -> None:
    """Given a lane written in transactions (commit markers at 3 and 6, an aborted record at
    7), when 2, 4, 5 and 8 arrive, then none is a gap; and when 10 arrives after 8 with a
    committed record at 9 missing, that is one."""
    guard = guard_with({(T, 0): 2}, unseen=frozenset({3, 6, 7}))

    assert [await guard.gap_before(T, 0, offset) for offset in (2, 4, 5, 8)] == [None] * 4
    assert await guard.gap_before(T, 0, 10) == Gap(9)


async def test_a_partition_ending_in_a_commit_marker_is_not_stalled() -> None:
    """Given a partition whose last record (4) is followed by its transaction's marker (5),
    when it has been idle, then it is not stalled: nothing was skipped."""
    guard = guard_with({(T, 0): 2}, unseen=frozenset({5}))
    for offset in (2, 3, 4):
        await guard.gap_before(T, 0, offset)

    assert await guard.stalled(T, 0, highwater=6, idle_seconds=0.0) is None


async def test_a_gap_that_stays_after_its_seek_is_sought_again_after_the_retry_time() -> None:
    """Given a seek back to 4 whose records never came (Faust dropped them again), when a record
    past the gap arrives after the retry time, then it seeks back to 4 again."""
    guard = guard_with({(T, 0): 4}, retry_seconds=0.0)

    assert await guard.gap_before(T, 0, 9) == Gap(4)
    assert await guard.gap_before(T, 0, 10) == Gap(4)


async def test_a_new_gap_after_a_closed_one_is_sought_at_once() -> None:
    """Given a gap before 4 closed by 4 arriving, when a later record skips again, then it is
    a new gap, sought at once (not passed over as the old one's)."""
    guard = guard_with({(T, 0): 2})
    assert await guard.gap_before(T, 0, 9) == Gap(2)
    assert [await guard.gap_before(T, 0, offset) for offset in range(2, 6)] == [None] * 4

    assert await guard.gap_before(T, 0, 20) == Gap(6)


async def test_the_first_record_after_an_assignment_is_checked_against_the_commit() -> None:
    """Given committed offset 2 at assignment, when the first record delivered is 9, then it
    is a gap back to 2."""
    guard = guard_with({(T, 1): 2})

    assert await guard.gap_before(T, 1, 9) == Gap(2)


async def test_a_silent_partition_behind_its_highwater_is_stalled() -> None:
    """Given a partition assigned at 2 that delivered nothing, then with highwater 14 it is
    stalled back to 2; with highwater 2 (nothing to read) it is not."""
    guard = guard_with({(T, 0): 2})

    assert await guard.stalled(T, 0, 2, idle_seconds=0.0) is None
    assert await guard.stalled(T, 0, 14, idle_seconds=0.0) == 2
    # Not again at once: the seek gets its time.
    assert await guard.stalled(T, 0, 14, idle_seconds=60.0) is None
    # And the records fetched before that seek are passed over, not sought again.
    assert await guard.gap_before(T, 0, 9) == Gap(None)


async def test_a_revoked_partition_is_forgotten() -> None:
    """Given a partition that delivered up to 5, when it is revoked and assigned again with
    nothing committed, then its first record is taken as the start."""
    guard = guard_with({})
    await guard.gap_before(T, 0, 5)
    guard.forget(0)

    assert await guard.gap_before(T, 0, 0) is None
    assert await guard.gap_before(T, 0, 1) is None
