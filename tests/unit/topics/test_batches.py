"""Signals as batch records: JSON arrays, halved until each fits the record size limit that
workers enforce, and read back by the decoder exactly as they were sent."""

from __future__ import annotations

from datetime import UTC, datetime

from core.codec import decode_signals
from topics.batches import encode_batches
from topics.limits import MAX_RECORD_BYTES
from topics.signals import SIGNAL, SIGNALS, Signal, signal_from

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def error(n: int, message_chars: int = 200) -> Signal:
    return signal_from(
        {
            "id": f"err-{n}",
            "workspace_id": "ws-000001",
            "type": "error_reported",
            "occurred_at": T0,
            "source": "api",
            "attributes": {"component": "api", "message": "m" * message_chars},
        }
    )


def size(signals: list[Signal]) -> int:
    return len(SIGNALS.dump_json(signals))


def batch_of_exactly(total: int) -> list[Signal]:
    """Signals whose JSON array is exactly `total` bytes (messages lengthened to fit)."""
    # An array is its brackets, its items and a comma between each two.
    signals: list[Signal] = []
    used = 1
    while used + len(SIGNAL.dump_json(error(len(signals), 100))) + 1 <= total:
        signals.append(error(len(signals), 100))
        used += len(SIGNAL.dump_json(signals[-1])) + 1
    missing, n = total - used, 0
    while missing > 0:
        grow = min(missing, 156)  # a message holds at most 256 characters
        signals[n] = error(n, 100 + grow)
        missing, n = missing - grow, n + 1
    assert size(signals) == total
    return signals


def decoded(records: list[bytes]) -> list[Signal]:
    """What the workers read from these records; every record must be accepted whole."""
    out = []
    for raw in records:
        result = decode_signals(raw)
        assert result.rejections == []
        out.extend(result.signals)
    return out


def test_a_small_batch_is_one_record_read_back_as_sent() -> None:
    """Given three signals, then they are one JSON-array record that decodes to the same
    three signals in the same order."""
    signals = [error(0), error(1), error(2)]

    records = encode_batches(signals)

    assert records == [SIGNALS.dump_json(signals)]
    assert decoded(records) == signals


def test_a_single_signal_is_a_one_item_array() -> None:
    """Given one signal, then its record is a one-item JSON array."""
    [raw] = encode_batches([error(0)])

    assert raw.startswith(b"[{") and raw.endswith(b"}]")
    assert decoded([raw]) == [error(0)]


def test_a_batch_of_exactly_the_record_limit_is_not_split() -> None:
    """Given signals whose JSON is exactly MAX_RECORD_BYTES, then they stay one record,
    which a worker accepts whole."""
    signals = batch_of_exactly(MAX_RECORD_BYTES)

    records = encode_batches(signals)

    assert [len(raw) for raw in records] == [MAX_RECORD_BYTES]
    assert decoded(records) == signals


def test_a_batch_one_byte_over_the_limit_is_halved() -> None:
    """Given signals whose JSON is MAX_RECORD_BYTES + 1, then they become two records of
    half the signals each, both within the limit, read back in order."""
    signals = batch_of_exactly(MAX_RECORD_BYTES + 1)

    records = encode_batches(signals)

    half = len(signals) // 2
    assert records == [SIGNALS.dump_json(signals[:half]), SIGNALS.dump_json(signals[half:])]
    assert all(len(raw) <= MAX_RECORD_BYTES for raw in records)
    assert decoded(records) == signals


def test_a_large_batch_is_halved_until_every_record_fits() -> None:
    """Given 10,000 signals (about 4.2 MiB of JSON), then they are halved three times into
    eight records of 1,250 each, every one within the limit, none lost or reordered."""
    signals = [error(n, 256) for n in range(10_000)]
    assert 4 * MAX_RECORD_BYTES < size(signals) < 8 * MAX_RECORD_BYTES

    records = encode_batches(signals)

    assert all(len(raw) <= MAX_RECORD_BYTES for raw in records)
    assert [len(decode_signals(raw).signals) for raw in records] == [1250] * 8
    assert decoded(records) == signals


def test_no_signals_make_no_records() -> None:
    """Given no signals, then there is nothing to send: no record (an empty array would be
    dead-lettered by every worker)."""
    assert encode_batches([]) == []
