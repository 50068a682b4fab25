"""Schedules as data: the period a moment falls in, for cron expressions and fixed intervals,
how late a missed period may still run, and what arms a timer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.rules import parse_policy
from core.schedules import Schedule, Timer, Timing, timer_schedule
from topics.signals import SignalType


def epoch(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp())  # type: ignore[misc]


@pytest.mark.parametrize(
    ("now", "period"),
    [
        (epoch(2026, 12, 7, 10, 0, 0), epoch(2026, 12, 7, 10, 0, 0)),
        (epoch(2026, 12, 7, 10, 0, 1), epoch(2026, 12, 7, 10, 0, 0)),
        (epoch(2026, 12, 7, 9, 59, 59), epoch(2026, 12, 6, 10, 0, 0)),
        (epoch(2026, 12, 8, 3, 0, 0), epoch(2026, 12, 7, 10, 0, 0)),
    ],
)
def test_a_daily_cron_period_begins_at_its_last_firing_time(now: int, period: int) -> None:
    """Given a daily 10:00 UTC schedule, then a moment's period starts at the latest 10:00 at
    or before it (10:00:00 itself included)."""
    daily = Schedule(id="daily", cron="0 10 * * *")

    assert daily.period_start(now) == period
    assert daily.period_start(now + 0.9) == period


def test_a_six_field_cron_counts_seconds_and_an_interval_aligns_on_the_epoch() -> None:
    """Given a cron with a seconds field and a 15-second interval, then both periods start on
    multiples of 15 seconds."""
    at = epoch(2026, 12, 7, 10, 0, 44)

    assert Schedule(id="quick", cron="* * * * * */15").period_start(at) == at - 14
    assert Schedule(id="quick", every_seconds=15).period_start(at) == at - 14


def test_a_missed_period_runs_within_one_period_up_to_an_hour_unless_told() -> None:
    """Given schedules without catch_up_seconds, then a period may run late by one period, an
    hour at most (a cron: an hour); a set catch_up_seconds wins; timer ticks always catch up."""
    assert Schedule(id="a", every_seconds=300).catch_up == 300
    assert Schedule(id="a", every_seconds=86_400).catch_up == 3600
    assert Schedule(id="a", cron="0 10 * * *").catch_up == 3600
    assert Schedule(id="a", cron="0 10 * * *", catch_up_seconds=7200).catch_up == 7200
    assert timer_schedule(Timing(tick_seconds=5)).every_seconds == 5
    assert timer_schedule(Timing()).catch_up == 7 * 86_400


def test_a_timer_of_one_component_is_armed_only_by_that_component() -> None:
    """Given a timer for the `ingest` component, then only signals naming that component arm
    it; a timer without a component is armed by every signal of its types."""
    ingest = Timer(id="hb", armed_by=(SignalType.HEARTBEAT,), after_seconds=600, component="ingest")
    anyone = Timer(id="hb", armed_by=(SignalType.HEARTBEAT,), after_seconds=600)

    assert ingest.arms({"component": "ingest"})
    assert not ingest.arms({"component": "billing"})
    assert not ingest.arms({})
    assert anyone.arms({})


RULE = """
[[rules]]
id = "retry"
on = ["webhook_failed"]
action = "retry_webhook"
priority = 6
cooldown_seconds = 300
"""


def test_schedules_timers_and_timing_are_part_of_the_policy_version_unless_default() -> None:
    """Given a policy, then spelling out the default timing keeps its version (a policy written
    before schedules existed replays as identical), while a schedule, a timer or another tick
    changes it."""
    plain = parse_policy(RULE, "t").version

    assert parse_policy(RULE + "[timing]\ntick_seconds = 10\n", "t").version == plain
    assert parse_policy(RULE + "[timing]\ntick_seconds = 5\n", "t").version != plain
    scheduled = RULE + '[[schedules]]\nid = "daily"\ncron = "0 10 * * *"\n'
    assert parse_policy(scheduled, "t").version != plain
    assert (
        parse_policy(scheduled.replace('"0 10', '"0 11'), "t").version
        != parse_policy(scheduled, "t").version
    )
    timed = RULE + '[[timers]]\nid = "hb"\narmed_by = ["heartbeat"]\nafter_seconds = 600\n'
    assert parse_policy(timed, "t").version != plain
