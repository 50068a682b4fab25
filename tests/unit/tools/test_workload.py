"""The demo and benchmark workload: realistic, and the same stream for the same seed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tools.workload import realistic_stream, workspace_ids
from topics.signals import Signal, SignalType

START = datetime(2024, 1, 1, tzinfo=UTC)
OPERATOR_TYPES = [
    SignalType.HEALTH_DEGRADED,
    SignalType.PROVISIONING_NEEDED,
    SignalType.FOLLOWUP_DUE,
    SignalType.WEBHOOK_FAILED,
    SignalType.INTEGRATION_OFFLINE,
]


def stream(seed: int = 7, signals: int = 500) -> list[Signal]:
    return realistic_stream(
        workspaces=50, signals=signals, start=START, span_seconds=3600, seed=seed
    )


def test_the_same_seed_gives_the_same_stream() -> None:
    """Given the same parameters and seed twice, then the streams are identical."""
    assert stream(seed=11) == stream(seed=11)


def test_another_seed_gives_another_stream() -> None:
    """Given two seeds, then the streams differ (and so do their ids)."""
    first, second = stream(seed=1), stream(seed=2)

    assert [(s.workspace_id, s.type) for s in first] != [(s.workspace_id, s.type) for s in second]
    assert {s.id for s in first}.isdisjoint({s.id for s in second})


def test_the_stream_is_in_event_time_order_within_the_span() -> None:
    """Given a stream, then it has the requested size, unique ids, non-decreasing event
    times inside [start, start + span), and only known workspaces."""
    signals = stream()

    assert len(signals) == 500
    assert len({s.id for s in signals}) == 500
    times = [s.occurred_at for s in signals]
    assert times == sorted(times)
    assert times[0] == START
    assert times[-1] < START + timedelta(seconds=3600)
    assert {s.workspace_id for s in signals} <= set(workspace_ids(50))


def test_attributes_match_the_signal_type() -> None:
    """Given a stream, then health signals carry a 20..79 score, webhook failures a 5xx
    status, and other types no attributes."""
    for signal in stream(signals=2000):
        if signal.type is SignalType.HEALTH_DEGRADED:
            assert 20 <= signal.attributes["health_score"] <= 79
        elif signal.type is SignalType.WEBHOOK_FAILED:
            assert signal.attributes["status"] in {500, 502, 503, 504}
        else:
            assert signal.attributes == {}


def test_the_default_stream_has_operator_signals_only() -> None:
    """Given the default (benchmark) stream, then it holds the five operator types and no
    monitoring signal, so benchmark figures stay comparable across changes."""
    assert {s.type for s in stream(signals=2000)} == set(OPERATOR_TYPES)


def test_the_default_stream_is_the_one_the_benchmark_always_used() -> None:
    """Given seed 7, then the first signals are exactly those of the benchmark's workload
    before the typed signals (same ids, workspaces, types, times and attributes)."""
    first = [
        (s.id, s.workspace_id, s.type.value, s.occurred_at, dict(s.attributes))
        for s in stream(signals=2000)[:4]
    ]

    assert first == [
        ("7-0", "ws-000003", "webhook_failed", START, {"status": 502}),
        ("7-1", "ws-000000", "followup_due", START + timedelta(seconds=1.8), {}),
        (
            "7-2",
            "ws-000015",
            "health_degraded",
            START + timedelta(seconds=3.6),
            {"health_score": 59},
        ),
        ("7-3", "ws-000000", "followup_due", START + timedelta(seconds=5.4), {}),
    ]


def monitored(seed: int = 7, signals: int = 3000) -> list[Signal]:
    return realistic_stream(
        workspaces=50, signals=signals, start=START, span_seconds=3600, seed=seed, monitoring=True
    )


def test_a_monitored_stream_mixes_in_every_monitoring_type() -> None:
    """Given monitoring on, then the stream holds every type, each of them valid."""
    assert {s.type for s in monitored()} == set(SignalType)


def test_gauges_in_a_monitored_stream_carry_their_reading() -> None:
    """Given monitoring on, then every queue depth has a whole pending count and every
    oldest-pending age a non-negative number of seconds; errors, publish failures and
    heartbeats carry no attributes."""
    signals = monitored()

    for signal in signals:
        if signal.type is SignalType.QUEUE_DEPTH:
            assert isinstance(signal.attributes["pending"], int)
            assert signal.attributes["pending"] >= 0
        elif signal.type is SignalType.OLDEST_PENDING_AGE:
            assert signal.attributes["age_seconds"] >= 0
        elif signal.type not in OPERATOR_TYPES:
            assert signal.attributes == {}
    # Saturated queues and old jobs happen, so health scores move in the demo.
    assert any(s.type is SignalType.QUEUE_DEPTH and s.attributes["pending"] > 50 for s in signals)
    assert any(
        s.type is SignalType.OLDEST_PENDING_AGE and s.attributes["age_seconds"] > 1800
        for s in signals
    )


def test_a_monitored_stream_is_reproducible_and_ordered() -> None:
    """Given monitoring on and the same seed twice, then the streams are identical, with
    unique ids in event-time order."""
    first, second = monitored(seed=3), monitored(seed=3)

    assert first == second
    assert len({s.id for s in first}) == len(first) == 3000
    assert [s.occurred_at for s in first] == sorted(s.occurred_at for s in first)


def test_a_few_workspaces_are_noisy() -> None:
    """Given a skewed stream, then the first workspace sends more than the last one."""
    signals = stream(signals=5000)
    per_workspace = {ws: 0 for ws in workspace_ids(50)}
    for signal in signals:
        per_workspace[signal.workspace_id] += 1

    assert per_workspace["ws-000000"] > 3 * per_workspace["ws-000049"]
