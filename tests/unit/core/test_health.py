"""A workspace's health score: 100 minus deductions read from its windowed state, as of its
watermark (event time), banded into healthy / degraded / critical."""

from __future__ import annotations

import pytest

from core import windows
from core.health import Deduction, Health, HealthStatus, health_of, status_of
from core.windows import SourcePosition, WindowConfig
from tests.support.factories import E0, signal_at
from topics.signals import Signal, SignalType

HOUR = 3600
CONFIG = WindowConfig(grace_seconds=60)
SOURCE = SourcePosition("signals", 0, 0)


sig = signal_at


def depth(at: float, pending: int, signal_id: str = "q") -> Signal:
    return sig(signal_id, at, SignalType.QUEUE_DEPTH, pending=pending)


def oldest(at: float, age_seconds: float) -> Signal:
    return sig("o", at, SignalType.OLDEST_PENDING_AGE, age_seconds=age_seconds)


def errors(count: int, at: float = 0) -> list[Signal]:
    return [sig(f"e{n}", at, SignalType.ERROR_REPORTED) for n in range(count)]


def publish_failures(count: int, at: float = 0) -> list[Signal]:
    return [sig(f"p{n}", at, SignalType.PUBLISH_FAILED) for n in range(count)]


def heartbeat(at: float) -> Signal:
    return sig(f"h{at}", at, SignalType.HEARTBEAT)


def health_after(*signals: Signal) -> Health:
    """The health of a workspace that sent these signals, in this order."""
    state = windows.initialize()
    windows.add(state, list(signals), SOURCE, CONFIG)
    return health_of(state)


def summary(health: Health) -> tuple[int, HealthStatus, list[int]]:
    """Score, band and the points of each deduction (the exact reasons are checked once,
    in test_every_deduction_adds_up_in_a_fixed_order)."""
    return health.score, health.status, [d.points for d in health.deductions]


# --- nothing wrong ----------------------------------------------------------------------------


def test_a_new_workspace_is_healthy_with_nothing_read() -> None:
    """Given a workspace that has sent nothing, then it scores 100, healthy, with no
    deductions and no gauge readings."""
    health = health_of(windows.initialize())

    assert summary(health) == (100, HealthStatus.HEALTHY, [])
    assert health.inputs == {
        "as_of": None,
        "pending": None,
        "oldest_pending_age_seconds": None,
        "publish_failures_last_hour": 0,
        "errors_last_hour": 0,
    }


def test_operator_signals_and_heartbeats_do_not_cost_points() -> None:
    """Given only heartbeats and operator signals, then the workspace scores 100."""
    health = health_after(
        heartbeat(0),
        sig("w", 10, SignalType.WEBHOOK_FAILED, status=503),
        sig("h", 20, SignalType.HEALTH_DEGRADED, health_score=5),
    )

    assert summary(health) == (100, HealthStatus.HEALTHY, [])


# --- each deduction at its edge ---------------------------------------------------------------


def test_a_queue_of_50_pending_is_not_saturated() -> None:
    """Given a fresh queue depth of exactly 50, then nothing is deducted."""
    assert summary(health_after(depth(0, 50))) == (100, HealthStatus.HEALTHY, [])


def test_a_queue_of_51_pending_costs_20_points() -> None:
    """Given a fresh queue depth of 51, then 20 points are deducted, saying why."""
    health = health_after(depth(0, 51))

    assert summary(health) == (80, HealthStatus.HEALTHY, [20])
    assert "51 pending" in health.deductions[0].reason


def test_the_latest_queue_depth_is_the_one_that_counts() -> None:
    """Given a saturated queue that then drains to 10, then nothing is deducted."""
    health = health_after(depth(0, 500, "q1"), depth(60, 10, "q2"))

    assert summary(health) == (100, HealthStatus.HEALTHY, [])
    assert health.inputs["pending"] == 10


def test_an_oldest_pending_job_of_1800_seconds_is_not_old() -> None:
    """Given a fresh oldest-pending age of exactly 1800 s (30 minutes), then no deduction."""
    assert summary(health_after(oldest(0, 1800))) == (100, HealthStatus.HEALTHY, [])


def test_an_oldest_pending_job_of_1801_seconds_costs_15_points() -> None:
    """Given a fresh oldest-pending age of 1801 s, then 15 points are deducted."""
    health = health_after(oldest(0, 1801))

    assert summary(health) == (85, HealthStatus.HEALTHY, [15])
    assert "1801 s" in health.deductions[0].reason


def test_a_fractional_age_just_over_30_minutes_counts() -> None:
    """Given an oldest-pending age of 1800.5 s, then it is over the limit."""
    [deduction] = health_after(oldest(0, 1800.5)).deductions

    assert deduction.points == 15
    assert "1800.5 s" in deduction.reason


def test_no_publish_failure_costs_nothing() -> None:
    """Given no publish failure in the last hour, then nothing is deducted for it."""
    health = health_after(heartbeat(0))

    assert health.score == 100
    assert health.inputs["publish_failures_last_hour"] == 0


@pytest.mark.parametrize("count", [1, 2, 7])
def test_publish_failures_in_the_last_hour_cost_10_points_once(count: int) -> None:
    """Given one or more publish failures in the last hour, then 10 points are deducted
    once, whatever their number, which the reason states."""
    health = health_after(*publish_failures(count))

    assert summary(health) == (90, HealthStatus.HEALTHY, [10])
    assert health.deductions[0].reason.endswith(f": {count}")


@pytest.mark.parametrize(
    ("count", "score", "status"),
    [
        (1, 95, HealthStatus.HEALTHY),
        (2, 90, HealthStatus.HEALTHY),
        (4, 80, HealthStatus.HEALTHY),
        (5, 75, HealthStatus.DEGRADED),
        (10, 50, HealthStatus.DEGRADED),
        (11, 45, HealthStatus.CRITICAL),
        (19, 5, HealthStatus.CRITICAL),
        (20, 0, HealthStatus.CRITICAL),
        (21, 0, HealthStatus.CRITICAL),
        (40, 0, HealthStatus.CRITICAL),
    ],
)
def test_each_error_in_the_last_hour_costs_5_points_down_to_0(
    count: int, score: int, status: HealthStatus
) -> None:
    """Given n errors in the last hour, then 5 points each are deducted and the score
    never goes below 0; the band follows the score."""
    health = health_after(*errors(count))

    assert summary(health) == (score, status, [5 * count])
    assert health.deductions[0].reason.endswith(f": {count}")
    assert health.inputs["errors_last_hour"] == count


def test_every_deduction_adds_up_in_a_fixed_order() -> None:
    """Given a saturated queue, an old pending job, a publish failure and two errors, then
    all four deductions apply, in that order: 100 - 20 - 15 - 10 - 10 = 45, critical."""
    health = health_after(
        *errors(2), *publish_failures(1), oldest(100, 3600), depth(200, 120), heartbeat(250)
    )

    assert (health.score, health.status) == (45, HealthStatus.CRITICAL)
    assert health.deductions == (
        Deduction("queue saturated: 120 pending > 50", 20),
        Deduction("oldest pending job: 3600 s > 1800 s", 15),
        Deduction("publish failures in the last hour: 1", 10),
        Deduction("errors in the last hour: 2", 10),
    )


def test_the_inputs_the_score_was_read_from_are_reported() -> None:
    """Given gauges, a publish failure and errors, then the health reports what it read:
    as of the watermark, the fresh gauge values and the counts of the last hour."""
    health = health_after(
        depth(10, 7), oldest(20, 95.5), *publish_failures(2, at=30), *errors(3, at=40)
    )

    assert health.inputs == {
        "as_of": E0 + 40,
        "pending": 7,
        "oldest_pending_age_seconds": 95.5,
        "publish_failures_last_hour": 2,
        "errors_last_hour": 3,
    }


# --- bands ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "status"),
    [
        (100, HealthStatus.HEALTHY),
        (80, HealthStatus.HEALTHY),
        (79, HealthStatus.DEGRADED),
        (50, HealthStatus.DEGRADED),
        (49, HealthStatus.CRITICAL),
        (0, HealthStatus.CRITICAL),
    ],
)
def test_a_score_falls_in_its_band(score: int, status: HealthStatus) -> None:
    """Given a score, then healthy from 80, degraded from 50 to 79, critical below 50."""
    assert status_of(score) is status


# --- the last hour, by event time -------------------------------------------------------------


def test_a_gauge_read_at_the_start_of_the_hour_still_counts() -> None:
    """Given a saturated queue read at T0, when the watermark is T0 + 3599 (the hour still
    starts at T0), then the reading is fresh and costs 20 points."""
    health = health_after(depth(0, 80), heartbeat(HOUR - 1))

    assert health.score == 80
    assert health.inputs["pending"] == 80


def test_a_gauge_older_than_the_hour_is_not_counted() -> None:
    """Given a saturated queue read at T0 and an old pending job, when the watermark reaches
    T0 + 3600 (the hour starts at T0 + 300), then both readings are stale: a queue that
    stopped reporting is not saturated forever."""
    health = health_after(depth(0, 80), oldest(0, 7200), heartbeat(HOUR))

    assert summary(health) == (100, HealthStatus.HEALTHY, [])
    assert health.inputs["pending"] is None
    assert health.inputs["oldest_pending_age_seconds"] is None


def test_errors_and_publish_failures_older_than_the_hour_are_not_counted() -> None:
    """Given errors and a publish failure at T0, then they count while the watermark is
    T0 + 3599 and no longer once it reaches T0 + 3600."""
    state = windows.initialize()
    windows.add(state, [*errors(3), *publish_failures(1), heartbeat(HOUR - 1)], SOURCE, CONFIG)
    assert health_of(state).score == 75

    windows.add(state, [heartbeat(HOUR)], SOURCE, CONFIG)

    assert summary(health_of(state)) == (100, HealthStatus.HEALTHY, [])


def test_health_is_judged_as_of_event_time_not_the_wall_clock() -> None:
    """Given the same signals folded twice, then the health is identical, and it is as of
    the watermark, whatever today's date."""
    signals = [depth(0, 60), *errors(2, at=10)]

    first, second = health_after(*signals), health_after(*signals)

    assert first == second
    assert first.inputs["as_of"] == E0 + 10


def test_health_as_json_is_what_the_http_view_returns() -> None:
    """Given a health with a deduction, then its JSON has the score, status name, the
    deductions as objects and the inputs."""
    health = health_after(depth(0, 51))

    assert health.as_json() == {
        "score": 80,
        "status": "healthy",
        "deductions": [{"reason": "queue saturated: 51 pending > 50", "points": 20}],
        "inputs": {
            "as_of": E0,
            "pending": 51,
            "oldest_pending_age_seconds": None,
            "publish_failures_last_hour": 0,
            "errors_last_hour": 0,
        },
    }
