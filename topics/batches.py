"""Signals as batch records: one JSON array per shard, each within the record size limit."""

from __future__ import annotations

from collections.abc import Sequence

from topics.limits import MAX_RECORD_BYTES
from topics.signals import SIGNALS, Signal


def encode_batches(signals: Sequence[Signal]) -> list[bytes]:
    """The signals (in order) as JSON-array records, halved until each fits MAX_RECORD_BYTES."""
    if not signals:
        return []
    value = SIGNALS.dump_json(list(signals))
    if len(value) <= MAX_RECORD_BYTES or len(signals) == 1:
        return [value]
    half = len(signals) // 2
    return encode_batches(signals[:half]) + encode_batches(signals[half:])
