"""The offset guard: records a stream skipped are noticed, so they can be fetched again."""

from __future__ import annotations

from collections.abc import Mapping

from agents.offset_guard import OffsetGuard

T = "commands.medium"


def guard_with(committed: dict[tuple[str, int], int | None]) -> OffsetGuard:
    async def lookup(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int | None]:
        return {key: committed.get(key) for key in keys}

    return OffsetGuard(lookup)


async def test_consecutive_records_and_copies_pass() -> None:
    """Given a partition assigned at committed offset 2, when 2, 3, 4 arrive and then a copy
    of 3 (after a seek), then none is a gap."""
    guard = guard_with({(T, 0): 2})

    assert [await guard.gap_before(T, 0, offset) for offset in (2, 3, 4, 3)] == [None] * 4


async def test_a_record_past_the_expected_offset_is_a_gap_until_the_missing_ones_come() -> None:
    """Given offsets 2 and 3 delivered, when 13 arrives, then seek back to 4; and when 4..13
    are fetched again they pass."""
    guard = guard_with({(T, 0): 2})
    await guard.gap_before(T, 0, 2)
    await guard.gap_before(T, 0, 3)

    assert await guard.gap_before(T, 0, 13) == 4
    assert await guard.gap_before(T, 0, 14) == 4
    assert [await guard.gap_before(T, 0, offset) for offset in range(4, 15)] == [None] * 11


async def test_the_first_record_after_an_assignment_is_checked_against_the_commit() -> None:
    """Given committed offset 2 at assignment, when the first record delivered is 9, then it
    is a gap back to 2."""
    guard = guard_with({(T, 1): 2})

    assert await guard.gap_before(T, 1, 9) == 2


async def test_a_silent_partition_behind_its_highwater_is_stalled() -> None:
    """Given a partition assigned at 2 that delivered nothing, then with highwater 14 it is
    stalled back to 2; with highwater 2 (nothing to read) it is not."""
    guard = guard_with({(T, 0): 2})

    assert await guard.stalled(T, 0, 2, idle_seconds=0.0) is None
    assert await guard.stalled(T, 0, 14, idle_seconds=0.0) == 2
    # Not again at once: the seek gets its time.
    assert await guard.stalled(T, 0, 14, idle_seconds=60.0) is None


async def test_a_revoked_partition_is_forgotten() -> None:
    """Given a partition that delivered up to 5, when it is revoked and assigned again with
    nothing committed, then its first record is taken as the start."""
    guard = guard_with({})
    await guard.gap_before(T, 0, 5)
    guard.forget(0)

    assert await guard.gap_before(T, 0, 0) is None
    assert await guard.gap_before(T, 0, 1) is None
