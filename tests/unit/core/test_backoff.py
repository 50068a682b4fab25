"""Retry timing: the exponential schedule, its jitter and cap, when attempts run out, a
provider's Retry-After hint, and the inputs that are refused."""

from __future__ import annotations

import math
from typing import Any

import pytest

from core.backoff import RetryPolicy, backoff_seconds, next_wait

DEFAULT = RetryPolicy()
# The largest draw below 1: the most jitter a wait can get.
ALMOST_ONE = math.nextafter(1.0, 0.0)


def test_the_defaults_are_five_attempts_from_one_second_up_to_five_minutes_half_jittered() -> None:
    """Given no overrides, then the policy is the documented one."""
    assert (
        DEFAULT.max_attempts,
        DEFAULT.base_seconds,
        DEFAULT.cap_seconds,
        DEFAULT.jitter,
    ) == (5, 1.0, 300.0, 0.5)


def test_without_jitter_drawn_the_waits_double_from_the_base() -> None:
    """Given the default policy and a draw of 0, when attempts 1 to 4 fail, then the waits are
    exactly 1, 2, 4 and 8 seconds."""
    waits = [backoff_seconds(DEFAULT, attempt, 0.0) for attempt in (1, 2, 3, 4)]

    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_the_largest_draw_halves_each_wait() -> None:
    """Given jitter 0.5 and a draw just below 1, then every wait is half of the undrawn one
    (never less)."""
    waits = [backoff_seconds(DEFAULT, attempt, ALMOST_ONE) for attempt in (1, 2, 3, 4)]

    assert waits == pytest.approx([0.5, 1.0, 2.0, 4.0])
    assert all(wait >= half for wait, half in zip(waits, [0.5, 1.0, 2.0, 4.0], strict=True))


def test_a_draw_in_between_scales_the_wait_linearly() -> None:
    """Given jitter 0.5 and a draw of 0.5, then attempt 3's 4 s wait is cut by a quarter."""
    assert backoff_seconds(DEFAULT, 3, 0.5) == 3.0


def test_without_jitter_the_draw_changes_nothing() -> None:
    """Given a policy with jitter 0, then any draw gives the undrawn wait."""
    policy = RetryPolicy(jitter=0.0)

    assert [backoff_seconds(policy, 3, draw) for draw in (0.0, 0.3, ALMOST_ONE)] == [4.0] * 3


def test_the_cap_is_reached_and_never_exceeded() -> None:
    """Given the 300 s cap, then attempt 9 (256 s) is still below it, attempt 10 (512 s) is
    capped, and so is attempt 1000, whose doubling would overflow a float."""
    assert backoff_seconds(DEFAULT, 9, 0.0) == 256.0
    assert backoff_seconds(DEFAULT, 10, 0.0) == 300.0
    assert backoff_seconds(DEFAULT, 1000, 0.0) == 300.0
    assert backoff_seconds(DEFAULT, 1000, ALMOST_ONE) == pytest.approx(150.0)


def test_five_attempts_give_four_waits_then_a_dead_letter() -> None:
    """Given max_attempts 5, when attempts 1 to 5 fail, then the first four are followed by
    1, 2, 4 and 8 s and the fifth by None (dead-letter it)."""
    waits = [next_wait(DEFAULT, attempt, 0.0) for attempt in (1, 2, 3, 4, 5)]

    assert waits == [1.0, 2.0, 4.0, 8.0, None]


def test_attempts_beyond_the_limit_are_dead_lettered_too() -> None:
    """Given a command that somehow got past max_attempts, then no further wait is given."""
    assert next_wait(DEFAULT, 6, 0.0) is None
    assert next_wait(DEFAULT, 6, 0.0, retry_after=10.0) is None


def test_a_single_attempt_policy_never_retries() -> None:
    """Given max_attempts 1, then the first failure is final."""
    assert next_wait(RetryPolicy(max_attempts=1), 1, 0.0) is None


def test_a_longer_retry_after_is_honoured() -> None:
    """Given attempt 2 (a 2 s backoff) and a provider asking for 30 s, then the wait is 30 s."""
    assert next_wait(DEFAULT, 2, 0.0, retry_after=30.0) == 30.0


def test_a_retry_after_beyond_the_cap_is_capped() -> None:
    """Given a provider asking for an hour, then the wait is the 300 s cap."""
    assert next_wait(DEFAULT, 1, 0.0, retry_after=3600.0) == 300.0


def test_a_shorter_retry_after_is_ignored() -> None:
    """Given attempt 3 (a 4 s backoff) and a provider asking for 1 s, then the wait stays 4 s;
    with the most jitter (2 s) too."""
    assert next_wait(DEFAULT, 3, 0.0, retry_after=1.0) == 4.0
    assert next_wait(DEFAULT, 3, ALMOST_ONE, retry_after=1.0) == pytest.approx(2.0)


def test_a_retry_after_is_compared_with_the_jittered_wait() -> None:
    """Given attempt 3 jittered down to 3 s and a provider asking for 3.5 s, then 3.5 s wins."""
    assert next_wait(DEFAULT, 3, 0.5, retry_after=3.5) == 3.5


@pytest.mark.parametrize(
    ("attempt", "draw", "message"),
    [
        (0, 0.0, "attempts count from 1"),
        (-1, 0.0, "attempts count from 1"),
        (1, 1.0, r"draw must be within \[0, 1\)"),
        (1, -0.1, r"draw must be within \[0, 1\)"),
    ],
)
def test_an_attempt_below_one_or_a_draw_outside_the_unit_interval_is_refused(
    attempt: int, draw: float, message: str
) -> None:
    """Given attempt 0 or a draw of 1.0, then backoff_seconds and next_wait raise ValueError."""
    with pytest.raises(ValueError, match=message):
        backoff_seconds(DEFAULT, attempt, draw)
    with pytest.raises(ValueError, match=message):
        next_wait(DEFAULT, attempt, draw)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"base_seconds": 301.0}, r"need 0 < base_seconds <= cap_seconds"),
        ({"base_seconds": 0.0}, r"need 0 < base_seconds <= cap_seconds"),
        ({"base_seconds": 2.0, "cap_seconds": 1.0}, r"need 0 < base_seconds <= cap_seconds"),
        ({"jitter": 1.5}, r"jitter must be within \[0, 1\]"),
        ({"jitter": -0.1}, r"jitter must be within \[0, 1\]"),
    ],
)
def test_an_invalid_policy_is_refused(fields: dict[str, Any], message: str) -> None:
    """Given base above the cap, jitter above 1 or no attempts, then the policy is refused."""
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**fields)


def test_the_edges_of_a_valid_policy_are_accepted() -> None:
    """Given base equal to the cap, jitter 1 and a single attempt, then the policy stands and
    its first wait is the cap (jitter 1 with draw 0 takes none of it off)."""
    policy = RetryPolicy(max_attempts=1, base_seconds=5.0, cap_seconds=5.0, jitter=1.0)

    assert backoff_seconds(policy, 1, 0.0) == 5.0
    assert backoff_seconds(policy, 1, 0.5) == 2.5
