"""Properties of the retry timing over any attempt, draw and sensible policy: a wait lies
within its jitter band under the cap, and waits never shrink as attempts go on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.backoff import RetryPolicy, backoff_seconds

MODEST = settings(max_examples=300, deadline=None)

attempts = st.integers(min_value=1, max_value=10_000)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    """Policies from milliseconds to a day; the base is at least a millisecond, so that the
    doubling reaches the cap long before the exponent's own limit (2 ** 64) applies."""
    base = draw(st.floats(min_value=0.001, max_value=3600.0))
    cap = draw(st.floats(min_value=base, max_value=86_400.0))
    jitter = draw(st.floats(min_value=0.0, max_value=1.0))
    return RetryPolicy(max_attempts=5, base_seconds=base, cap_seconds=cap, jitter=jitter)


def undrawn(policy: RetryPolicy, attempt: int) -> float:
    """min(cap, base * 2 ** (n - 1)), without overflowing for large n."""
    if attempt > 1000:  # 2.0 ** 1024 overflows; any base >= 1 ms is capped long before
        return policy.cap_seconds
    return min(policy.cap_seconds, policy.base_seconds * 2.0 ** (attempt - 1))


@MODEST
@given(policies(), attempts, draws)
def test_a_wait_lies_within_its_jitter_band_under_the_cap(
    policy: RetryPolicy, attempt: int, draw: float
) -> None:
    """For any policy, attempt and draw: ceiling * (1 - jitter) <= wait <= ceiling, with
    ceiling = min(cap, base * 2 ** (n - 1))."""
    wait = backoff_seconds(policy, attempt, draw)
    ceiling = undrawn(policy, attempt)

    assert ceiling * (1 - policy.jitter) <= wait <= ceiling <= policy.cap_seconds


@MODEST
@given(st.just(RetryPolicy()), attempts, draws)
def test_the_default_policy_keeps_within_its_band(
    policy: RetryPolicy, attempt: int, draw: float
) -> None:
    """For the shipped policy: half of min(300, 2 ** (n - 1)) <= wait <= min(300, 2 ** (n - 1))."""
    wait = backoff_seconds(policy, attempt, draw)
    ceiling = undrawn(policy, attempt)

    assert ceiling / 2 <= wait <= ceiling <= 300.0


@MODEST
@given(policies(), st.lists(attempts, min_size=2, max_size=20), draws)
def test_waits_never_shrink_as_attempts_go_on(
    policy: RetryPolicy, some_attempts: list[int], draw: float
) -> None:
    """For a fixed policy and draw, the waits of increasing attempts are non-decreasing."""
    ordered = sorted(some_attempts)

    waits = [backoff_seconds(policy, attempt, draw) for attempt in ordered]

    assert waits == sorted(waits)
