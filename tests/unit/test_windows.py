"""Per-workspace tumbling windows on event time: counts, de-duplication, lateness, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from tables import windows
from tables.windows import MAX_IDS_PER_WINDOW, SourcePosition, WindowConfig
from topics.signals import Signal, SignalType

# 2024-01-01T00:00:00Z: a multiple of 300 s, so T0 starts a window.
T0 = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200
CONFIG = WindowConfig(size_seconds=300, grace_seconds=60)
SOURCE = SourcePosition("signals", 3, 1200)


def sig(
    signal_id: str,
    at: float,
    signal_type: SignalType = SignalType.FOLLOWUP_DUE,
    workspace_id: str = "ws-1",
) -> Signal:
    """A signal `at` seconds after T0."""
    return Signal(
        id=signal_id,
        workspace_id=workspace_id,
        type=signal_type,
        occurred_at=T0 + timedelta(seconds=at),
    )


def fold(*batches: list[Signal]) -> tuple[windows.WorkspaceState, list[windows.FoldResult]]:
    state = windows.initialize()
    results = [windows.add(state, batch, SOURCE, CONFIG) for batch in batches]
    return state, results


def test_a_new_workspace_has_no_windows() -> None:
    """Given nothing folded yet, then the readable state is empty."""
    assert windows.result(windows.initialize()) == {
        "watermark": None,
        "windows": {},
        "late": 0,
        "duplicates": 0,
    }


def test_signals_are_counted_per_type_in_their_window() -> None:
    """Given signals of two types in one window, then each observation carries the running
    count of its type and the window holds the counts per type."""
    state, [folded] = fold(
        [
            sig("a", 0),
            sig("b", 10, SignalType.WEBHOOK_FAILED),
            sig("c", 299),
        ]
    )

    assert [(o.signal_id, o.signal_type, o.window_start, o.count) for o in folded.observations] == [
        ("a", SignalType.FOLLOWUP_DUE, E0, 1),
        ("b", SignalType.WEBHOOK_FAILED, E0, 1),
        ("c", SignalType.FOLLOWUP_DUE, E0, 2),
    ]
    assert windows.result(state)["windows"] == {E0: {"followup_due": 2, "webhook_failed": 1}}


def test_an_observation_carries_the_signal_and_its_provenance() -> None:
    """Given one signal, then its observation has its workspace, event time, attributes and
    the source position it was read from."""
    signal = Signal(
        id="a",
        workspace_id="ws-9",
        type=SignalType.HEALTH_DEGRADED,
        occurred_at=T0 + timedelta(seconds=42.9),
        attributes={"health_score": 30},
    )

    [observation] = windows.add(windows.initialize(), [signal], SOURCE, CONFIG).observations

    assert observation == windows.Observation(
        signal_id="a",
        workspace_id="ws-9",
        signal_type=SignalType.HEALTH_DEGRADED,
        occurred_at=E0 + 42,
        attributes={"health_score": 30},
        window_start=E0,
        count=1,
        source=SourcePosition("signals", 3, 1200),
    )


def test_window_boundaries_follow_event_time() -> None:
    """Given signals at the last second of a window and the first of the next, then they
    fall into different windows."""
    _, [folded] = fold([sig("a", 299.999), sig("b", 300)])

    assert [o.window_start for o in folded.observations] == [E0, E0 + 300]
    assert [o.count for o in folded.observations] == [1, 1]


def test_the_same_instant_in_another_time_zone_is_the_same_window() -> None:
    """Given the same instant written with a +02:00 offset, then it is in the same window."""
    plus_two = timezone(timedelta(hours=2))
    local = Signal(
        id="b",
        workspace_id="ws-1",
        type=SignalType.FOLLOWUP_DUE,
        occurred_at=datetime(2024, 1, 1, 2, 0, 10, tzinfo=plus_two),
    )

    _, [folded] = fold([sig("a", 0), local])

    assert [(o.window_start, o.count) for o in folded.observations] == [(E0, 1), (E0, 2)]


def test_a_duplicate_id_in_the_same_window_is_counted_once() -> None:
    """Given the same signal id twice in one window, then the second is a duplicate, not
    observed, and the count stays 1."""
    first, again = sig("a", 0), sig("a", 100)

    state, [folded] = fold([first, again])

    assert [o.signal_id for o in folded.observations] == ["a"]
    assert folded.duplicates == [again]
    assert folded.late == []
    assert windows.result(state)["windows"] == {E0: {"followup_due": 1}}
    assert windows.result(state)["duplicates"] == 1


def test_a_duplicate_is_detected_across_batches() -> None:
    """Given a signal redelivered in a later batch (a Kafka retry), then it is a duplicate."""
    state, [_, second] = fold([sig("a", 0)], [sig("a", 0)])

    assert second.observations == []
    assert [s.id for s in second.duplicates] == ["a"]
    assert windows.result(state)["windows"] == {E0: {"followup_due": 1}}


def test_a_duplicate_of_another_type_is_still_a_duplicate() -> None:
    """Given a second signal reusing an id with another type, then it is not counted."""
    state, [folded] = fold([sig("a", 0), sig("a", 5, SignalType.WEBHOOK_FAILED)])

    assert len(folded.duplicates) == 1
    assert windows.result(state)["windows"] == {E0: {"followup_due": 1}}


def test_the_same_id_in_different_windows_is_counted_in_each() -> None:
    """Given one id in two windows, then each window counts it once (de-dup is per window)."""
    state, [folded] = fold([sig("a", 0), sig("a", 300)])

    assert [(o.window_start, o.count) for o in folded.observations] == [(E0, 1), (E0 + 300, 1)]
    assert folded.duplicates == []
    assert windows.result(state)["windows"] == {
        E0: {"followup_due": 1},
        E0 + 300: {"followup_due": 1},
    }


def test_a_signal_within_the_grace_period_is_counted() -> None:
    """Given the watermark one second short of window end + grace, when an out-of-order
    signal for that window arrives, then it is still counted."""
    state, [_, folded] = fold([sig("a", 0), sig("b", 359)], [sig("c", 10)])

    assert [(o.signal_id, o.window_start, o.count) for o in folded.observations] == [("c", E0, 2)]
    assert folded.late == []
    assert windows.result(state)["windows"][E0] == {"followup_due": 2}


def test_a_signal_beyond_the_grace_period_is_late_and_not_observed() -> None:
    """Given the watermark at window end + grace, when a signal for that window arrives,
    then it is late: not observed and counted in the state."""
    late_signal = sig("c", 10)

    state, [_, folded] = fold([sig("a", 0), sig("b", 360)], [late_signal])

    assert folded.observations == []
    assert folded.late == [late_signal]
    assert folded.duplicates == []
    assert windows.result(state)["late"] == 1


def test_lateness_is_judged_within_one_batch_too() -> None:
    """Given one batch that moves the watermark past a window and then sends a signal for
    it, then that signal is late."""
    _, [folded] = fold([sig("a", 0), sig("b", 400), sig("c", 20)])

    assert [o.signal_id for o in folded.observations] == ["a", "b"]
    assert [s.id for s in folded.late] == ["c"]


def test_a_late_redelivery_is_late_not_a_duplicate() -> None:
    """Given a signal seen, then its window closes, when it is redelivered, then it is late."""
    _, [_, folded] = fold([sig("a", 0), sig("b", 400)], [sig("a", 0)])

    assert [s.id for s in folded.late] == ["a"]
    assert folded.duplicates == []


def test_closed_windows_are_expired_from_the_state() -> None:
    """Given windows at T0 and T0+300, when event time reaches T0+660 (the second window's
    end + grace), then both are removed and only the newest window is kept."""
    state, _ = fold([sig("a", 0), sig("b", 300)], [sig("c", 359)])
    assert sorted(windows.result(state)["windows"]) == [E0, E0 + 300]

    windows.add(state, [sig("d", 660)], SOURCE, CONFIG)

    assert windows.result(state)["windows"] == {E0 + 600: {"followup_due": 1}}
    assert sorted(state["windows"]) == [str(E0 + 600)]


def test_an_open_window_is_kept() -> None:
    """Given the watermark just short of a window's end + grace, then it is not expired."""
    state, _ = fold([sig("a", 0), sig("b", 359)])

    assert sorted(windows.result(state)["windows"]) == [E0, E0 + 300]


def test_the_watermark_is_the_max_event_time_counted() -> None:
    """Given signals out of order, then the watermark is the latest event time, whole
    seconds, and an earlier signal never moves it back."""
    state, _ = fold([sig("a", 100.7), sig("b", 250), sig("c", 120)])

    assert windows.result(state)["watermark"] == E0 + 250


def test_a_duplicate_does_not_move_the_watermark() -> None:
    """Given a duplicate id with a later time in the same window, then the watermark stays
    at the time of the counted signal."""
    state, [folded] = fold([sig("a", 10), sig("a", 200)])

    assert len(folded.duplicates) == 1
    assert windows.result(state)["watermark"] == E0 + 10


def test_the_fold_updates_the_given_state_in_place() -> None:
    """Given a state, when signals are added, then the returned state is the same object."""
    state = windows.initialize()

    folded = windows.add(state, [sig("a", 0)], SOURCE, CONFIG)

    assert folded.state is state
    assert state["watermark"] == E0


def test_an_empty_batch_changes_nothing() -> None:
    """Given a state, when an empty batch is folded, then the state is unchanged."""
    state, _ = fold([sig("a", 0), sig("b", 10)])
    before = windows.result(state)

    folded = windows.add(state, [], SOURCE, CONFIG)

    assert folded.observations == folded.duplicates == folded.late == []
    assert windows.result(state) == before


def test_past_the_id_cap_duplicates_go_unchecked_and_this_is_counted() -> None:
    """Given a window already holding MAX_IDS_PER_WINDOW ids, when a new id and then its
    repeat arrive, then both are counted and the loss of de-dup is visible."""
    full = [sig(f"s{n}", 0) for n in range(MAX_IDS_PER_WINDOW)]
    state, _ = fold(full)

    windows.add(state, [sig("extra", 1), sig("extra", 2)], SOURCE, CONFIG)

    assert state["dedup_unchecked"] == 2
    assert state["duplicates"] == 0
    assert windows.result(state)["windows"][E0] == {"followup_due": MAX_IDS_PER_WINDOW + 2}


def test_window_start_rounds_down_to_the_size() -> None:
    """Given event times, then window_start is the start of their tumbling window."""
    assert [windows.window_start(E0 + t, CONFIG) for t in (0, 1, 299, 300, 599)] == [
        E0,
        E0,
        E0,
        E0 + 300,
        E0 + 300,
    ]


def test_a_window_is_closed_exactly_at_end_plus_grace() -> None:
    """Given a window, then it closes when the watermark reaches end + grace, not before."""
    assert windows.is_closed(E0, None, CONFIG) is False
    assert windows.is_closed(E0, E0 + 359, CONFIG) is False
    assert windows.is_closed(E0, E0 + 360, CONFIG) is True
