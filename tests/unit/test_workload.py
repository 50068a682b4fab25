"""The demo and benchmark workload: realistic, and the same stream for the same seed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.workload import realistic_stream, workspace_ids
from topics.signals import Signal, SignalType

START = datetime(2024, 1, 1, tzinfo=UTC)


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


def test_a_few_workspaces_are_noisy() -> None:
    """Given a skewed stream, then the first workspace sends more than the last one."""
    signals = stream(signals=5000)
    per_workspace = {ws: 0 for ws in workspace_ids(50)}
    for signal in signals:
        per_workspace[signal.workspace_id] += 1

    assert per_workspace["ws-000000"] > 3 * per_workspace["ws-000049"]
