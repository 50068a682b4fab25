"""Per-workspace windows on event time: 1-minute counts, the last hour in 5-minute steps,
de-duplication, lateness, expiry, last-seen times, gauges, and the upcast of stored states."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from core import windows
from core.windows import MAX_IDS_PER_WINDOW, SourcePosition, WindowConfig
from tests.support.factories import E0, signal_at
from topics.signals import Signal, SignalType, signal_from

# 2024-01-01T00:00:00Z: a multiple of 3600 s, so T0 starts a minute, a step and an hour.
HOUR = 3600
CONFIG = WindowConfig(grace_seconds=60)
SOURCE = SourcePosition("signals", 3, 1200)
FIXTURES = Path(__file__).parents[1] / "fixtures"
FOLLOWUP = SignalType.FOLLOWUP_DUE
WEBHOOK = SignalType.WEBHOOK_FAILED


def sig(
    signal_id: str,
    at: float,
    signal_type: SignalType = FOLLOWUP,
    workspace_id: str = "ws-1",
    **attributes: Any,
) -> Signal:
    return signal_at(signal_id, at, signal_type, workspace_id, **attributes)


def depth(signal_id: str, at: float, pending: int) -> Signal:
    """A queue_depth gauge reading `at` seconds after T0."""
    return sig(signal_id, at, SignalType.QUEUE_DEPTH, pending=pending)


def fold(
    *batches: list[Signal], config: WindowConfig = CONFIG
) -> tuple[windows.WorkspaceState, list[windows.FoldResult]]:
    state = windows.initialize()
    results = [windows.add(state, batch, SOURCE, config) for batch in batches]
    return state, results


def more(state: windows.WorkspaceState, *signals: Signal) -> windows.FoldResult:
    """Fold one more batch into an existing state."""
    return windows.add(state, list(signals), SOURCE, CONFIG)


def ids(signals: list[Signal]) -> list[str]:
    return [s.id for s in signals]


# --- a new workspace --------------------------------------------------------------------------


def test_a_new_workspace_has_nothing_to_show() -> None:
    """Given nothing folded yet, then the state is version 3, the policy remembers nothing
    issued, and its view is empty."""
    state = windows.initialize()

    assert state["v"] == 3
    assert state["policy"] == {"issued": {}, "held": {}, "day": None, "used": 0}
    assert windows.view(state) == {
        "as_of": None,
        "minute": None,
        "hour": None,
        "last_seen": {},
        "gauges": {},
        "late": 0,
        "duplicates": 0,
        "dedup_unchecked": 0,
    }


# --- 5-minute buckets and observations --------------------------------------------------------


def test_signals_are_counted_per_type_in_their_five_minute_bucket() -> None:
    """Given signals of two types in one 5-minute bucket, then each observation carries the
    running count of its type in that bucket, which is what the policy fires on."""
    state, [folded] = fold([sig("a", 0), sig("b", 10, WEBHOOK), sig("c", 299)])

    assert [(o.signal_id, o.signal_type, o.window_start, o.count) for o in folded.observations] == [
        ("a", FOLLOWUP, E0, 1),
        ("b", WEBHOOK, E0, 1),
        ("c", FOLLOWUP, E0, 2),
    ]
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 2, "webhook_failed": 1}


def test_an_observation_carries_the_signal_and_its_provenance() -> None:
    """Given one signal, then its observation has its workspace, event time (whole seconds),
    attributes and the source position it was read from."""
    signal = sig("a", 42.9, SignalType.HEALTH_DEGRADED, workspace_id="ws-9", health_score=30)

    [observation] = windows.add(windows.initialize(), [signal], SOURCE, CONFIG).observations

    assert observation == windows.Observation(
        signal_id="a",
        workspace_id="ws-9",
        signal_type=SignalType.HEALTH_DEGRADED,
        occurred_at=E0 + 42,
        attributes={"health_score": 30.0},
        window_start=E0,
        count=1,
        source=SourcePosition("signals", 3, 1200),
    )


def test_bucket_boundaries_follow_event_time() -> None:
    """Given signals at the last instant of a 5-minute bucket and the first of the next,
    then they fall into different buckets, each counting from 1."""
    _, [folded] = fold([sig("a", 299.999), sig("b", 300)])

    assert [(o.window_start, o.count) for o in folded.observations] == [(E0, 1), (E0 + 300, 1)]


def test_the_same_instant_in_another_time_zone_is_the_same_bucket() -> None:
    """Given the same instant written with a +02:00 offset, then it is in the same bucket."""
    plus_two = timezone(timedelta(hours=2))
    local = signal_from(
        {
            "id": "b",
            "workspace_id": "ws-1",
            "type": "followup_due",
            "occurred_at": datetime(2024, 1, 1, 2, 0, 10, tzinfo=plus_two),
        }
    )

    _, [folded] = fold([sig("a", 0), local])

    assert [(o.window_start, o.count) for o in folded.observations] == [(E0, 1), (E0, 2)]


# --- 1-minute windows -------------------------------------------------------------------------


def test_signals_are_counted_per_type_in_one_minute_windows() -> None:
    """Given signals over two minutes of one 5-minute bucket, then each minute holds its own
    counts per type, the view shows the watermark's minute, and observations still count
    the whole 5-minute bucket."""
    state, [folded] = fold(
        [sig("a", 0), sig("b", 30, WEBHOOK), sig("c", 59.999), sig("d", 60), sig("e", 119)]
    )

    assert state["minutes"] == {
        str(E0): {"followup_due": 2, "webhook_failed": 1},
        str(E0 + 60): {"followup_due": 2},
    }
    assert windows.view(state)["minute"] == {
        "start": E0 + 60,
        "end": E0 + 120,
        "counts": {"followup_due": 2},
    }
    assert [o.count for o in folded.observations] == [1, 1, 2, 3, 4]


# --- the last hour ----------------------------------------------------------------------------


def test_the_hour_sums_the_twelve_steps_ending_with_the_watermarks_step() -> None:
    """Given one follow-up in each of twelve 5-minute steps and a webhook failure in the
    last, then the hour spans those twelve steps and sums them."""
    state, _ = fold([sig(f"s{n}", n * 300) for n in range(12)] + [sig("w", 3310, WEBHOOK)])

    hour = windows.view(state)["hour"]

    assert (hour["start"], hour["end"]) == (E0, E0 + HOUR)
    assert hour["counts"] == {"followup_due": 12, "webhook_failed": 1}
    assert [step["start"] for step in hour["steps"]] == [E0 + n * 300 for n in range(12)]
    assert [step["counts"] for step in hour["steps"]] == [{"followup_due": 1}] * 11 + [
        {"followup_due": 1, "webhook_failed": 1}
    ]


def test_an_empty_step_is_shown_with_no_counts() -> None:
    """Given signals in the first and third step only, then the hour still lists twelve
    steps, the second and the ones before the first signal with no counts."""
    state, _ = fold([sig("a", 0), sig("b", 600)])

    steps = windows.view(state)["hour"]["steps"]

    assert len(steps) == 12
    assert steps[-3:] == [
        {"start": E0, "counts": {"followup_due": 1}},
        {"start": E0 + 300, "counts": {}},
        {"start": E0 + 600, "counts": {"followup_due": 1}},
    ]
    assert all(step["counts"] == {} for step in steps[:-3])


def test_the_hour_moves_on_in_five_minute_steps() -> None:
    """Given twelve full steps, when a signal arrives in the next step, then the hour drops
    the oldest step: it starts five minutes later and still sums twelve steps."""
    state, _ = fold([sig(f"s{n}", n * 300) for n in range(12)])

    more(state, sig("next", HOUR))

    hour = windows.view(state)["hour"]
    assert (hour["start"], hour["end"]) == (E0 + 300, E0 + HOUR + 300)
    assert hour["counts"] == {"followup_due": 12}


# --- expiry -----------------------------------------------------------------------------------


def test_a_step_expires_exactly_when_the_hour_moves_past_it() -> None:
    """Given a step at T0, then it is kept while the watermark is in the hour that starts
    with it (up to T0 + 3599) and removed once the watermark reaches T0 + 3600."""
    state, _ = fold([sig("a", 0)], [sig("b", HOUR - 1)])
    assert str(E0) in state["steps"]
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 2}

    more(state, sig("c", HOUR))

    assert str(E0) not in state["steps"]
    assert sorted(state["steps"]) == [str(E0 + HOUR - 300), str(E0 + HOUR)]
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 2}


def test_a_minute_expires_exactly_when_it_becomes_late() -> None:
    """Given a minute at T0 (grace 60 s), then it is kept while the watermark is below its
    end + grace (T0 + 120) and removed at T0 + 120, while its 5-minute step stays."""
    state, _ = fold([sig("a", 0)], [sig("b", 119)])
    assert sorted(state["minutes"]) == [str(E0), str(E0 + 60)]

    more(state, sig("c", 120))

    assert sorted(state["minutes"]) == [str(E0 + 60), str(E0 + 120)]
    assert state["steps"][str(E0)]["counts"] == {"followup_due": 3}


def test_a_jump_of_hours_expires_every_old_bucket_at_once() -> None:
    """Given minutes and steps across the first hour, when the next signal is three hours
    later, then only its own minute and step remain and the hour counts only it; last-seen
    times and gauge readings are kept (health judges their age, not the fold)."""
    state, _ = fold([sig("a", 0), sig("b", 61, WEBHOOK), sig("c", 1000), depth("q", 2000, 70)])

    more(state, sig("d", 3 * HOUR + 5))

    later = E0 + 3 * HOUR
    assert state["minutes"] == {str(later): {"followup_due": 1}}
    assert list(state["steps"]) == [str(later)]
    view = windows.view(state)
    assert view["hour"]["counts"] == {"followup_due": 1}
    assert view["last_seen"] == {
        "followup_due": later + 5,
        "webhook_failed": E0 + 61,
        "queue_depth": E0 + 2000,
    }
    assert view["gauges"] == {"queue_depth": {"at": E0 + 2000, "value": 70}}


# --- lateness ---------------------------------------------------------------------------------


def test_a_signal_within_the_grace_period_is_counted() -> None:
    """Given the watermark one second short of its minute's end + grace (T0 + 119), when an
    out-of-order signal for the minute at T0 arrives, then it is counted."""
    state, [_, folded] = fold([sig("a", 0), sig("b", 119)], [sig("c", 10)])

    assert [(o.signal_id, o.window_start, o.count) for o in folded.observations] == [("c", E0, 3)]
    assert folded.late == []
    assert state["minutes"][str(E0)] == {"followup_due": 2}


def test_a_signal_at_minute_end_plus_grace_is_late_and_not_counted() -> None:
    """Given the watermark exactly at its minute's end + grace (T0 + 120), when a signal for
    the minute at T0 arrives, then it is late: not observed, not counted, and tallied."""
    late_signal = sig("c", 10)

    state, [_, folded] = fold([sig("a", 0), sig("b", 120)], [late_signal])

    assert folded.observations == []
    assert folded.late == [late_signal]
    assert folded.duplicates == []
    assert state["steps"][str(E0)]["counts"] == {"followup_due": 2}
    assert windows.view(state)["late"] == 1


@pytest.mark.parametrize(
    ("occurred_at", "watermark", "grace", "late"),
    [
        (E0 + 10, None, 60, False),
        (E0 + 10, E0 + 119, 60, False),
        (E0 + 10, E0 + 120, 60, True),
        (E0 + 59, E0 + 59, 0, False),
        (E0 + 59, E0 + 60, 0, True),
        (E0, E0 + 659, 600, False),
        (E0, E0 + 660, 600, True),
    ],
    ids=[
        "no-watermark",
        "one-second-before",
        "at-end-plus-grace",
        "no-grace-same-minute",
        "no-grace-next-minute",
        "max-grace-before",
        "max-grace-at",
    ],
)
def test_lateness_is_judged_on_the_signals_minute_plus_grace(
    occurred_at: int, watermark: int | None, grace: int, late: bool
) -> None:
    """Given a signal's event time and a watermark, then it is late exactly when its
    minute's end plus the grace period is at or before the watermark."""
    assert windows.is_late(occurred_at, watermark, WindowConfig(grace)) is late


def test_with_no_grace_the_previous_minute_is_closed_by_the_next() -> None:
    """Given no grace, when the watermark enters the next minute, then a signal for the
    previous minute is late even one second behind."""
    _, [folded] = fold([sig("a", 60), sig("b", 59)], config=WindowConfig(0))

    assert ids(folded.late) == ["b"]


def test_lateness_is_judged_within_one_batch_too() -> None:
    """Given one batch that moves the watermark past a minute's grace and then sends a
    signal for it, then that signal is late."""
    _, [folded] = fold([sig("a", 0), sig("b", 400), sig("c", 20)])

    assert [o.signal_id for o in folded.observations] == ["a", "b"]
    assert ids(folded.late) == ["c"]


def test_a_late_redelivery_is_late_not_a_duplicate() -> None:
    """Given a signal seen, then its minute closes, when it is redelivered, then it is late."""
    _, [_, folded] = fold([sig("a", 0), sig("b", 400)], [sig("a", 0)])

    assert ids(folded.late) == ["a"]
    assert folded.duplicates == []


# --- duplicates -------------------------------------------------------------------------------


def test_a_duplicate_id_in_the_same_step_is_counted_once_even_in_another_minute() -> None:
    """Given the same signal id twice in one 5-minute step (in different minutes), then the
    second is a duplicate, not observed, and neither minute nor step counts it."""
    first, again = sig("a", 0), sig("a", 100)

    state, [folded] = fold([first, again])

    assert [o.signal_id for o in folded.observations] == ["a"]
    assert folded.duplicates == [again]
    assert folded.late == []
    assert state["minutes"] == {str(E0): {"followup_due": 1}}
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 1}
    assert windows.view(state)["duplicates"] == 1


def test_a_duplicate_is_detected_across_batches() -> None:
    """Given a signal redelivered in a later batch (a Kafka retry), then it is a duplicate."""
    state, [_, second] = fold([sig("a", 0)], [sig("a", 0)])

    assert second.observations == []
    assert ids(second.duplicates) == ["a"]
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 1}


def test_a_duplicate_of_another_type_is_still_a_duplicate() -> None:
    """Given a second signal reusing an id with another type, then it is not counted."""
    state, [folded] = fold([sig("a", 0), sig("a", 5, WEBHOOK)])

    assert len(folded.duplicates) == 1
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 1}
    assert "webhook_failed" not in windows.view(state)["last_seen"]


def test_the_same_id_in_different_steps_is_counted_in_each() -> None:
    """Given one id in two 5-minute steps, then each counts it once (de-dup is per step)."""
    state, [folded] = fold([sig("a", 0), sig("a", 300)])

    assert [(o.window_start, o.count) for o in folded.observations] == [(E0, 1), (E0 + 300, 1)]
    assert folded.duplicates == []
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 2}


def test_past_the_id_cap_duplicates_go_unchecked_and_this_is_counted() -> None:
    """Given a step already holding MAX_IDS_PER_WINDOW ids, when a new id and then its
    repeat arrive, then both are counted and the loss of de-dup is visible."""
    state, _ = fold([sig(f"s{n}", 0) for n in range(MAX_IDS_PER_WINDOW)])

    more(state, sig("extra", 1), sig("extra", 2))

    view = windows.view(state)
    assert (view["dedup_unchecked"], view["duplicates"]) == (2, 0)
    assert view["hour"]["counts"] == {"followup_due": MAX_IDS_PER_WINDOW + 2}


# --- last seen --------------------------------------------------------------------------------


def test_last_seen_is_the_latest_event_time_per_type() -> None:
    """Given signals of two types out of order, then last_seen holds each type's latest
    event time (whole seconds); an older signal never moves it back."""
    state, _ = fold([sig("a", 100.7), sig("b", 50, WEBHOOK), sig("c", 90)])

    assert windows.view(state)["last_seen"] == {
        "followup_due": E0 + 100,
        "webhook_failed": E0 + 50,
    }


def test_last_seen_ignores_late_signals_and_duplicates() -> None:
    """Given a late webhook failure and a duplicate id with a later time, then neither
    changes last_seen: only counted signals are seen."""
    state, _ = fold([sig("a", 0), sig("b", 200)], [sig("late", 10, WEBHOOK), sig("b", 250)])

    assert windows.view(state)["last_seen"] == {"followup_due": E0 + 200}


# --- gauges -----------------------------------------------------------------------------------


def test_a_gauge_keeps_its_latest_reading() -> None:
    """Given two queue-depth readings, then the gauge is the later one, with its time."""
    state, _ = fold([depth("q1", 100, 10), depth("q2", 200, 60)])

    assert state["gauges"] == {"queue_depth": [E0 + 200, 60]}
    assert windows.view(state)["gauges"] == {"queue_depth": {"at": E0 + 200, "value": 60}}


def test_an_older_reading_arriving_later_does_not_replace_a_newer_one() -> None:
    """Given a reading at T0 + 200, when a reading at T0 + 150 arrives afterwards (within
    grace), then the gauge keeps the newer one by event time; the older is still counted."""
    state, [_, folded] = fold([depth("new", 200, 30)], [depth("old", 150, 90)])

    assert [o.signal_id for o in folded.observations] == ["old"]
    assert windows.view(state)["gauges"] == {"queue_depth": {"at": E0 + 200, "value": 30}}


def test_each_gauge_type_is_kept_apart_and_other_types_make_no_gauge() -> None:
    """Given a queue depth, an oldest-pending age and a health signal with a score, then
    there is one gauge per gauge type with its own reading and none for the health signal."""
    state, _ = fold(
        [
            depth("q", 10, 12),
            sig("o", 20, SignalType.OLDEST_PENDING_AGE, age_seconds=1801.5),
            sig("h", 30, SignalType.HEALTH_DEGRADED, health_score=20),
        ]
    )

    assert windows.view(state)["gauges"] == {
        "queue_depth": {"at": E0 + 10, "value": 12},
        "oldest_pending_age": {"at": E0 + 20, "value": 1801.5},
    }


def test_a_late_or_duplicate_reading_does_not_change_the_gauge() -> None:
    """Given a gauge reading, when a late reading and a duplicate with a later time and
    another value arrive, then the gauge is unchanged."""
    state, _ = fold([depth("q1", 300, 5), sig("x", 500)])

    more(state, depth("late", 10, 99), depth("q1", 400, 77))

    assert windows.view(state)["gauges"] == {"queue_depth": {"at": E0 + 300, "value": 5}}


# --- watermark and the fold itself ------------------------------------------------------------


def test_the_watermark_is_the_max_event_time_counted() -> None:
    """Given signals out of order, then the watermark is the latest event time, whole
    seconds, and an earlier signal never moves it back."""
    state, _ = fold([sig("a", 100.7), sig("b", 250), sig("c", 120)])

    assert windows.view(state)["as_of"] == E0 + 250


def test_a_duplicate_does_not_move_the_watermark() -> None:
    """Given a duplicate id with a later time in the same step, then the watermark stays at
    the time of the counted signal."""
    state, [folded] = fold([sig("a", 10), sig("a", 200)])

    assert len(folded.duplicates) == 1
    assert windows.view(state)["as_of"] == E0 + 10


def test_the_fold_updates_the_given_state_in_place() -> None:
    """Given a state, when signals are added, then the returned state is the same object."""
    state = windows.initialize()

    folded = windows.add(state, [sig("a", 0)], SOURCE, CONFIG)

    assert folded.state is state
    assert state["watermark"] == E0


def test_an_empty_batch_changes_nothing() -> None:
    """Given a state, when an empty batch is folded, then the state is unchanged."""
    state, _ = fold([sig("a", 0), sig("b", 10), depth("q", 20, 3)])
    before = orjson.loads(orjson.dumps(state))

    folded = windows.add(state, [], SOURCE, CONFIG)

    assert folded.observations == folded.duplicates == folded.late == []
    assert state == before


def test_bucket_starts_round_down_to_minute_step_and_hour() -> None:
    """Given event times, then minute_start, step_start and hour_start (the first step of
    the hour ending with the time's step) round down as documented."""
    times = [E0, E0 + 1, E0 + 59, E0 + 60, E0 + 299, E0 + 300, E0 + 3599, E0 + 3600]

    assert [windows.minute_start(t) - E0 for t in times] == [0, 0, 0, 60, 240, 300, 3540, 3600]
    assert [windows.step_start(t) - E0 for t in times] == [0, 0, 0, 0, 0, 300, 3300, 3600]
    assert [windows.hour_start(t) - E0 for t in times] == [
        -3300,
        -3300,
        -3300,
        -3300,
        -3300,
        -3000,
        0,
        300,
    ]


@pytest.mark.parametrize("grace", [0, 60, 600])
def test_a_grace_period_up_to_ten_minutes_is_accepted(grace: int) -> None:
    """Given a grace period from 0 to 600 s, then the config holds it."""
    assert WindowConfig(grace).grace_seconds == grace


@pytest.mark.parametrize("grace", [-1, 601])
def test_a_grace_period_outside_zero_to_ten_minutes_is_refused(grace: int) -> None:
    """Given a grace period below 0 or above 600 s, then the config refuses it, saying the
    range: a late signal must still land in a step of the last hour."""
    with pytest.raises(ValueError, match="grace_seconds must be between 0 and 600"):
        WindowConfig(grace)


# --- stored states: the golden files and the upcast -------------------------------------------


def load(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def golden_stream() -> list[list[Signal]]:
    """The stream behind fixtures/workspace_state_v2.json: counts over two steps and three
    minutes, a duplicate, a late signal and both gauges."""
    return [
        [
            sig("a", 10, WEBHOOK),
            sig("b", 20, WEBHOOK),
            depth("q1", 30, 80),
            sig("c", 250),
            sig("o1", 260, SignalType.OLDEST_PENDING_AGE, age_seconds=1900.5),
        ],
        [sig("c", 255), sig("d", 310, WEBHOOK), depth("q2", 320, 40), sig("x", 5)],
    ]


def test_a_folded_state_matches_the_version_3_golden_file() -> None:
    """Given a fixed stream, when folded, then the stored state is exactly the golden JSON:
    the stored format only changes on purpose (with a new version and an upcaster)."""
    state, _ = fold(*golden_stream())

    assert orjson.loads(orjson.dumps(state)) == state
    assert state == load("workspace_state_v3.json")


def test_a_version_2_state_is_upcast_to_version_3_with_an_empty_policy_memory() -> None:
    """Given a state stored by version 2 (before the policy engine), when upcast, then
    everything it had is kept and the policy remembers nothing issued: no cooldown runs
    and no budget is spent for it."""
    stored = load("workspace_state_v2.json")

    state = windows.upcast(stored)

    assert state == {**stored, "v": 3, "policy": {"issued": {}, "held": {}, "day": None, "used": 0}}
    assert state == load("workspace_state_v3.json")


def test_a_version_1_state_is_upcast_to_version_3() -> None:
    """Given a state stored by version 1 (5-minute tumbling windows), when upcast, then its
    windows are version 2's steps, its watermark and counters are kept, and the parts
    version 1 did not have start empty."""
    stored = load("workspace_state_v1.json")

    state = windows.upcast(stored)

    assert state == {
        "v": 3,
        "watermark": E0 + 310,
        "minutes": {},
        "steps": {
            str(E0): {
                "counts": {"followup_due": 1, "webhook_failed": 2},
                "ids": {"a": 1, "b": 1, "c": 1},
            },
            str(E0 + 300): {"counts": {"webhook_failed": 1}, "ids": {"d": 1}},
        },
        "last_seen": {},
        "gauges": {},
        "late": 2,
        "duplicates": 1,
        "dedup_unchecked": 0,
        "policy": {"issued": {}, "held": {}, "day": None, "used": 0},
    }
    view = windows.view(state)
    assert view["as_of"] == E0 + 310
    assert view["hour"]["counts"] == {"followup_due": 1, "webhook_failed": 3}


def test_an_upcast_state_keeps_counting_and_deduplicating_where_version_1_left_off() -> None:
    """Given an upcast version 1 state, when a signal it already counted is redelivered and
    a new one arrives in its open bucket, then the first is a duplicate and the second
    continues that bucket's count (so the policy does not fire again in that bucket)."""
    state = windows.upcast(load("workspace_state_v1.json"))

    folded = more(state, sig("c", 250), sig("e", 320, WEBHOOK))

    assert ids(folded.duplicates) == ["c"]
    assert [(o.signal_id, o.window_start, o.count) for o in folded.observations] == [
        ("e", E0 + 300, 2)
    ]
    assert windows.view(state)["hour"]["counts"] == {"followup_due": 1, "webhook_failed": 4}
    assert windows.view(state)["duplicates"] == 2


def test_a_current_state_is_not_changed_by_upcast() -> None:
    """Given a version 3 state, then upcast returns it as it is."""
    state, _ = fold(*golden_stream())

    assert windows.upcast(state) is state
