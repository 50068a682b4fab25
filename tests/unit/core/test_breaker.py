"""A provider's circuit breaker: closed while failures stay below the threshold, open at the
threshold with a time to come back, one trial call after the cool-down, and what the trial's
result (or its silence) does."""

from __future__ import annotations

import pytest

from core.breaker import Admission, Breaker, BreakerConfig, BreakerState, admit, record

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
CONFIG = BreakerConfig(failure_threshold=3, cooldown_seconds=30.0)
T0 = 1_000.0


def failed(
    times: int, breaker: Breaker | None = None, at: float = T0
) -> tuple[Breaker, list[BreakerState | None]]:
    """The breaker after `times` failed calls at `at`, and the transition each returned."""
    current = breaker or Breaker("smtp")
    transitions: list[BreakerState | None] = []
    for _ in range(times):
        current, transition = record(current, CONFIG, at, ok=False)
        transitions.append(transition)
    return current, transitions


def opened(at: float = T0) -> Breaker:
    """A breaker that opened at `at` after three failures."""
    breaker, _ = failed(3, at=at)
    assert breaker.state is OPEN
    return breaker


def trial(at: float = T0 + 30.0) -> Breaker:
    """The breaker opened at T0, half-open with its trial admitted at `at`."""
    admission = admit(opened(), CONFIG, at)
    assert (admission.allowed, admission.transition) == (True, HALF_OPEN)
    return admission.breaker


def test_the_defaults_open_after_five_failures_for_thirty_seconds() -> None:
    """Given no overrides, then a breaker opens at 5 failures and cools down for 30 s."""
    assert (BreakerConfig().failure_threshold, BreakerConfig().cooldown_seconds) == (5, 30.0)


def test_a_new_breaker_is_closed_and_admits() -> None:
    """Given a provider never called, then its breaker is closed and a call may go ahead."""
    breaker = Breaker("smtp")

    assert admit(breaker, CONFIG, T0) == Admission(breaker, allowed=True)
    assert (breaker.state, breaker.failures, breaker.trial_since) == (CLOSED, 0, None)


def test_failures_below_the_threshold_keep_it_closed() -> None:
    """Given a threshold of 3, when two calls fail, then the breaker is closed, counts 2,
    reports no transition and still admits."""
    breaker, transitions = failed(2)

    assert (breaker.state, breaker.failures) == (CLOSED, 2)
    assert transitions == [None, None]
    assert admit(breaker, CONFIG, T0).allowed is True


def test_a_success_resets_the_count() -> None:
    """Given two failures, when a call succeeds, then the count is back to 0 without a
    transition, and two more failures still do not open it."""
    breaker, _ = failed(2)

    breaker, transition = record(breaker, CONFIG, T0, ok=True)

    assert (breaker, transition) == (Breaker("smtp"), None)
    again, transitions = failed(2, breaker)
    assert (again.state, again.failures, transitions) == (CLOSED, 2, [None, None])


def test_it_opens_at_exactly_the_threshold_and_says_so_once() -> None:
    """Given a threshold of 3, when three calls fail at T0, then the third opens it at T0 and
    only the third reports OPEN."""
    breaker, transitions = failed(3)

    assert transitions == [None, None, OPEN]
    assert breaker == Breaker("smtp", state=OPEN, failures=3, opened_at=T0)


def test_an_open_breaker_refuses_until_the_cool_down_ends() -> None:
    """Given a breaker opened at T0 with a 30 s cool-down, when a caller asks at T0, T0 + 10
    and just before T0 + 30, then it is refused and told to come back at T0 + 30."""
    breaker = opened()

    admissions = [admit(breaker, CONFIG, now) for now in (T0, T0 + 10.0, T0 + 29.999)]

    assert admissions == [Admission(breaker, allowed=False, retry_at=T0 + 30.0)] * 3


def test_after_the_cool_down_exactly_one_trial_goes_through() -> None:
    """Given a breaker opened at T0, when a caller asks at T0 + 30, then it is admitted as the
    trial (HALF_OPEN reported), and a second caller at T0 + 31 is refused for a second."""
    first = admit(opened(), CONFIG, T0 + 30.0)

    assert first == Admission(
        Breaker("smtp", state=HALF_OPEN, failures=3, opened_at=T0, trial_since=T0 + 30.0),
        allowed=True,
        transition=HALF_OPEN,
    )
    second = admit(first.breaker, CONFIG, T0 + 31.0)
    assert second == Admission(first.breaker, allowed=False, retry_at=T0 + 32.0)


def test_the_wait_while_a_trial_runs_is_at_most_the_cool_down() -> None:
    """Given a cool-down shorter than a second, then a caller refused during the trial is
    told to come back after the cool-down, not after a full second."""
    config = BreakerConfig(failure_threshold=1, cooldown_seconds=0.25)
    breaker, _ = record(Breaker("smtp"), config, T0, ok=False)
    half_open = admit(breaker, config, T0 + 0.25).breaker

    assert admit(half_open, config, T0 + 0.3).retry_at == pytest.approx(T0 + 0.55)


def test_a_successful_trial_closes_it_and_forgets_the_failures() -> None:
    """Given a trial in flight, when it succeeds, then the breaker is closed as new (CLOSED
    reported) and admits again."""
    breaker, transition = record(trial(), CONFIG, T0 + 31.0, ok=True)

    assert (breaker, transition) == (Breaker("smtp"), CLOSED)
    assert admit(breaker, CONFIG, T0 + 31.0) == Admission(breaker, allowed=True)


def test_a_failed_trial_opens_it_again_from_the_failure() -> None:
    """Given a trial admitted at T0 + 30, when it fails at T0 + 35, then the breaker opens
    again (OPEN reported) at T0 + 35, one more consecutive failure counted, and refuses
    callers until T0 + 65."""
    breaker, transition = record(trial(), CONFIG, T0 + 35.0, ok=False)

    assert transition is OPEN
    assert breaker == Breaker("smtp", state=OPEN, failures=4, opened_at=T0 + 35.0)
    assert admit(breaker, CONFIG, T0 + 64.0) == Admission(
        breaker, allowed=False, retry_at=T0 + 65.0
    )
    assert admit(breaker, CONFIG, T0 + 65.0).transition is HALF_OPEN


def test_a_trial_that_never_reports_back_is_given_up_after_one_cool_down() -> None:
    """Given a trial admitted at T0 + 30 whose worker vanished, when a caller asks at T0 + 60,
    then a new trial is admitted (still half-open, no new transition)."""
    admission = admit(trial(), CONFIG, T0 + 60.0)

    assert admission == Admission(
        Breaker("smtp", state=HALF_OPEN, failures=3, opened_at=T0, trial_since=T0 + 60.0),
        allowed=True,
    )
    assert admit(admission.breaker, CONFIG, T0 + 61.0).allowed is False


def test_a_failure_reported_while_open_changes_nothing() -> None:
    """Given a breaker opened at T0, when a call admitted before it opened fails at T0 + 5,
    then the breaker, its opening time and its count stay as they were."""
    breaker = opened()

    assert record(breaker, CONFIG, T0 + 5.0, ok=False) == (breaker, None)


def test_a_late_success_reported_while_open_keeps_it_open() -> None:
    """Given a breaker opened at T0, when a call admitted before it opened succeeds at T0 + 5,
    then the breaker stays open until its cool-down ends, as a late failure would."""
    breaker = opened()

    assert record(breaker, CONFIG, T0 + 5.0, ok=True) == (breaker, None)
