"""Limits every producer of signals must keep to (the decoder, the client and the JSON Schema
files state the same numbers)."""

from __future__ import annotations

# One record on the signals topic, as its value's bytes.
MAX_RECORD_BYTES = 1024 * 1024
# Signals in one batch record.
MAX_BATCH_SIGNALS = 10_000
