"""The internal `observations` topic: what the aggregate agent hands the decide agent.

One record per signals record, compact rows rather than objects: this is the hot path, and the
writer is our own aggregate agent, so the reader trusts the shape and skips re-validation.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from tables.windows import Observation, SourcePosition
from topics.signals import SignalType


def encode_observations(observations: Sequence[Observation]) -> bytes:
    """Observations that all come from one source record, as one compact record."""
    source = observations[0].source
    return orjson.dumps(
        {
            "src": [source.topic, source.partition, source.offset],
            "obs": [
                [
                    o.signal_id,
                    o.workspace_id,
                    o.signal_type,
                    o.occurred_at,
                    o.attributes,
                    o.window_start,
                    o.count,
                ]
                for o in observations
            ],
        }
    )


def decode_observations(raw: bytes) -> list[Observation]:
    """The inverse of encode_observations."""
    record = orjson.loads(raw)
    topic, partition, offset = record["src"]
    source = SourcePosition(topic, partition, offset)
    return [
        Observation(
            signal_id=row[0],
            workspace_id=row[1],
            signal_type=SignalType(row[2]),
            occurred_at=row[3],
            attributes=row[4],
            window_start=row[5],
            count=row[6],
            source=source,
        )
        for row in record["obs"]
    ]
