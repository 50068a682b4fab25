"""The facts a rule may check: each read on its own as a check asks for it, and all of them
as a decision records them, must agree for every signal of a realistic stream."""

from __future__ import annotations

from datetime import UTC, datetime

from core import windows
from core.facts import FactReader
from core.windows import Observation, SourcePosition, WorkspaceState, fold_signal, late_horizon
from tests.support.factories import signal_at
from tools.workload import realistic_stream
from topics.signals import SignalType

SOURCE = SourcePosition("signals", 0, 0)
HORIZON = late_horizon(windows.WindowConfig(grace_seconds=60))
TYPES = [signal_type.value for signal_type in SignalType]
# Every fact a policy may check, and names no signal carries (a check on them never holds).
NAMES = [
    "signal.type",
    *(f"{window}.{type_name}" for window in ("minute", "hour") for type_name in TYPES),
    "queue.pending",
    "queue.oldest_pending_age_seconds",
    "health.score",
    "health.status",
    "signal.health_score",
    "signal.pending",
    "signal.age_seconds",
    "signal.no_such_attribute",
    "queue.no_such_gauge",
    "health.no_such_part",
]


def test_each_fact_read_alone_equals_the_fact_a_decision_records() -> None:
    """Given 3,000 signals of 20 workspaces with gauges, errors and health reports, then for
    every signal counted, each fact read on its own equals the recorded one (or both are
    missing), and the reader as a mapping is the recorded dict."""
    states: dict[str, WorkspaceState] = {}
    stream = realistic_stream(
        workspaces=20,
        signals=3000,
        start=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
        span_seconds=7200,
        monitoring=True,
    )
    checked = 0
    for signal in stream:
        state = states.setdefault(signal.workspace_id, windows.initialize())
        outcome = fold_signal(state, signal, SOURCE, HORIZON)
        if not isinstance(outcome, Observation):
            continue
        recorded = FactReader(state, outcome).as_dict()
        reader = FactReader(state, outcome)
        assert {name: reader.get(name) for name in NAMES} == {
            name: recorded.get(name) for name in NAMES
        }
        assert dict(FactReader(state, outcome)) == recorded
        checked += 1
    assert checked > 2500


def test_counts_gauges_and_health_as_of_the_signal() -> None:
    """Given two errors in one minute and a queue reading 70 minutes old, then the minute and
    the hour count both errors, the stale reading is no fact, and health lost 5 per error."""
    state = windows.initialize()
    folded = [
        signal_at("q", 0, SignalType.QUEUE_DEPTH, pending=80),
        signal_at("e1", 4200, SignalType.ERROR_REPORTED),
        signal_at("e2", 4210, SignalType.ERROR_REPORTED),
    ]
    for signal in folded:
        outcome = fold_signal(state, signal, SOURCE, HORIZON)
    assert isinstance(outcome, Observation)
    reader = FactReader(state, outcome)

    assert reader["minute.error_reported"] == 2
    assert reader["hour.error_reported"] == 2
    assert reader.get("hour.queue_depth") is None
    assert reader.get("queue.pending") is None
    assert (reader["health.score"], reader["health.status"]) == (90, "healthy")
    assert "queue.pending" not in reader
