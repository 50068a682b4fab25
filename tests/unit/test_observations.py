"""The internal observations topic: what the aggregate agent writes, the decide agent reads."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from tables import windows
from tables.windows import Observation, SourcePosition, WindowConfig
from topics.observations import decode_observations, encode_observations
from topics.signals import SignalType, signal_from

SOURCE = SourcePosition("dev.signals", 5, 123_456_789)


def obs(signal_id: str, signal_type: SignalType, count: int, **attributes: object) -> Observation:
    return Observation(
        signal_id=signal_id,
        workspace_id="ws-000042",
        signal_type=signal_type,
        occurred_at=1_704_067_242,
        attributes=attributes,
        window_start=1_704_067_200,
        count=count,
        source=SOURCE,
    )


def test_observations_survive_the_round_trip() -> None:
    """Given observations of one record with every attribute type, when encoded and
    decoded, then they are equal to the originals, with the enum type restored."""
    observations = [
        obs("a", SignalType.HEALTH_DEGRADED, 1, health_score=42, ratio=0.5, ok=False, note=None),
        obs("b", SignalType.WEBHOOK_FAILED, 1, status=503, url_host="hooks.example.com"),
        obs("c", SignalType.HEALTH_DEGRADED, 2, health_score=18_446_744_073_709_551_615),
    ]

    decoded = decode_observations(encode_observations(observations))

    assert decoded == observations
    assert all(type(o.signal_type) is SignalType for o in decoded)


def test_the_record_is_compact_rows_with_the_source_once() -> None:
    """Given two observations, then the record holds the source once and one row each."""
    raw = encode_observations(
        [obs("a", SignalType.FOLLOWUP_DUE, 1), obs("b", SignalType.FOLLOWUP_DUE, 2)]
    )

    assert orjson.loads(raw) == {
        "src": ["dev.signals", 5, 123_456_789],
        "obs": [
            ["a", "ws-000042", "followup_due", 1_704_067_242, {}, 1_704_067_200, 1],
            ["b", "ws-000042", "followup_due", 1_704_067_242, {}, 1_704_067_200, 2],
        ],
    }


def test_observations_of_typed_signals_survive_the_round_trip() -> None:
    """Given a gauge, a float gauge and a webhook failure folded as the aggregate agent
    does, when their observations are encoded and decoded, then they are equal to those the
    fold produced, typed attributes included."""
    signals = [
        signal_from(
            {
                "id": signal_id,
                "workspace_id": "ws-000042",
                "type": signal_type,
                "occurred_at": datetime(2024, 1, 1, 0, 0, 42, tzinfo=UTC),
                "attributes": attributes,
            }
        )
        for signal_id, signal_type, attributes in [
            ("q", "queue_depth", {"pending": 51, "queue": "emails"}),
            ("o", "oldest_pending_age", {"age_seconds": 1801.5}),
            ("w", "webhook_failed", {"status": 503, "attempt": 2, "error": "timed out"}),
        ]
    ]
    folded = windows.add(windows.initialize(), signals, SOURCE, WindowConfig(60))

    decoded = decode_observations(encode_observations(folded.observations))

    assert decoded == folded.observations
    assert [o.attributes for o in decoded] == [
        {"pending": 51, "queue": "emails"},
        {"age_seconds": 1801.5},
        {"status": 503, "attempt": 2, "error": "timed out"},
    ]
