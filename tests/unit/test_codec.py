"""Decoding the signals topic: every input ends accepted or rejected with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from topics.codec import MAX_BATCH_SIGNALS, MAX_RECORD_BYTES, decode_signals
from topics.signals import SignalType

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def item(**overrides: Any) -> dict[str, Any]:
    """A valid signal as a producer would write it (without an id unless given)."""
    base: dict[str, Any] = {
        "workspace_id": "ws-000001",
        "type": "health_degraded",
        "occurred_at": "2024-01-01T00:00:00Z",
        "source": "health-monitor",
        "attributes": {"health_score": 42},
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not ...}


def record(value: Any) -> bytes:
    return orjson.dumps(value)


# --- accepted input ---------------------------------------------------------------------------


def test_a_single_object_is_one_accepted_signal() -> None:
    """Given one JSON object, when decoded, then it is one signal with every field kept."""
    decoded = decode_signals(record(item(id="sig-1")))

    assert decoded.rejections == []
    [signal] = decoded.signals
    assert signal.id == "sig-1"
    assert signal.workspace_id == "ws-000001"
    assert signal.type is SignalType.HEALTH_DEGRADED
    assert signal.occurred_at == T0
    assert signal.source == "health-monitor"
    assert signal.attributes == {"health_score": 42}
    assert signal.schema_version == 1


def test_a_batch_is_accepted_in_order() -> None:
    """Given a JSON array of three signals, when decoded, then all three come out in order."""
    batch = [item(id="a"), item(id="b", type="followup_due"), item(id="c", workspace_id="ws-2")]

    decoded = decode_signals(record(batch))

    assert decoded.rejections == []
    assert [(s.id, s.workspace_id, s.type) for s in decoded.signals] == [
        ("a", "ws-000001", SignalType.HEALTH_DEGRADED),
        ("b", "ws-000001", SignalType.FOLLOWUP_DUE),
        ("c", "ws-2", SignalType.HEALTH_DEGRADED),
    ]


def test_source_and_attributes_have_defaults() -> None:
    """Given a signal with only the required fields, then source and attributes default."""
    minimal = {
        "id": "s",
        "workspace_id": "w",
        "type": "webhook_failed",
        "occurred_at": "2024-01-01T02:00:00+02:00",
    }

    [signal] = decode_signals(record(minimal)).signals

    assert signal.source == "unknown"
    assert signal.attributes == {}
    assert signal.occurred_at == T0


def test_a_record_of_exactly_the_size_limit_is_accepted() -> None:
    """Given a valid record padded to exactly MAX_RECORD_BYTES, then it is accepted."""
    body = record(item(id="edge"))
    raw = body + b" " * (MAX_RECORD_BYTES - len(body))

    decoded = decode_signals(raw)

    assert len(raw) == MAX_RECORD_BYTES
    assert [s.id for s in decoded.signals] == ["edge"]
    assert decoded.rejections == []


def test_a_batch_of_exactly_the_signal_limit_is_accepted() -> None:
    """Given MAX_BATCH_SIGNALS signals in one array, then every one is accepted."""
    batch = [
        {
            "id": f"s{n}",
            "workspace_id": "w",
            "type": "followup_due",
            "occurred_at": "2024-01-01T00:00:00Z",
        }
        for n in range(MAX_BATCH_SIGNALS)
    ]

    decoded = decode_signals(record(batch))

    assert len(decoded.signals) == MAX_BATCH_SIGNALS
    assert decoded.rejections == []
    assert decoded.signals[-1].id == f"s{MAX_BATCH_SIGNALS - 1}"


# --- derived ids ------------------------------------------------------------------------------


def derived_id(value: dict[str, Any]) -> str:
    [signal] = decode_signals(record(value)).signals
    return signal.id


def test_a_missing_id_is_derived_and_stable() -> None:
    """Given the same id-less signal decoded twice, then it gets the same derived id."""
    first = derived_id(item())
    second = derived_id(item())

    assert first == second
    assert first.startswith("d-")
    assert len(first) == len("d-") + 32


def test_a_derived_id_does_not_depend_on_key_order() -> None:
    """Given the same content with its keys in another order, then the derived id is the same."""
    forward = item()
    backward = dict(reversed(list(forward.items())))

    assert list(forward) != list(backward)
    assert derived_id(forward) == derived_id(backward)


@pytest.mark.parametrize(
    "change",
    [
        {"workspace_id": "ws-000002"},
        {"type": "followup_due"},
        {"occurred_at": "2024-01-01T00:00:01Z"},
        {"source": "other"},
        {"attributes": {"health_score": 43}},
    ],
    ids=["workspace", "type", "occurred_at", "source", "attributes"],
)
def test_a_derived_id_changes_with_the_content(change: dict[str, Any]) -> None:
    """Given two id-less signals differing in one field, then their derived ids differ."""
    assert derived_id(item()) != derived_id(item(**change))


def test_a_derived_id_is_the_same_in_a_batch_and_alone() -> None:
    """Given a signal sent alone and then inside a batch, then both get the same id."""
    alone = derived_id(item())

    decoded = decode_signals(record([item(source="other"), item()]))

    assert decoded.signals[1].id == alone
    assert decoded.signals[0].id != alone


def test_a_given_id_is_kept_as_is() -> None:
    """Given a signal with an id, then the id is not replaced by a derived one."""
    assert derived_id(item(id="producer-7:42")) == "producer-7:42"


# --- whole-record rejections ------------------------------------------------------------------


def test_no_value_is_undecodable() -> None:
    """Given a record with no value (a tombstone), then it is one undecodable rejection."""
    decoded = decode_signals(None)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason == "undecodable: empty record (no value)"
    assert rejection.raw == b""
    assert rejection.index is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b"\x00\x01\x02", b'{"id": "a"', b"NaN", b"\xff\xfe{}"],
    ids=["empty", "broken", "binary", "truncated", "nan", "bom-ish"],
)
def test_bytes_that_are_not_json_are_undecodable(raw: bytes) -> None:
    """Given bytes that are not JSON, then the record is rejected whole, bytes kept."""
    decoded = decode_signals(raw)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason == "undecodable: not UTF-8 JSON"
    assert rejection.raw == raw
    assert rejection.index is None


def test_invalid_utf8_is_undecodable() -> None:
    """Given a JSON object whose string holds invalid UTF-8, then it is undecodable."""
    raw = b'{"workspace_id": "ws-\xc3\x28", "type": "followup_due"}'

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason == "undecodable: not UTF-8 JSON"
    assert rejection.raw == raw


@pytest.mark.parametrize("raw", [b"42", b'"a signal"', b"null", b"true", b"1.5"])
def test_json_that_is_neither_object_nor_array_is_invalid(raw: bytes) -> None:
    """Given a JSON scalar, then the record is rejected whole as the wrong shape."""
    decoded = decode_signals(raw)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason == "invalid: expected a JSON object (a signal) or array (a batch)"
    assert rejection.raw == raw
    assert rejection.index is None


def test_an_empty_batch_is_invalid() -> None:
    """Given an empty JSON array, then the record is rejected whole."""
    [rejection] = decode_signals(b"[]").rejections

    assert rejection.reason == "invalid: empty batch"
    assert rejection.raw == b"[]"
    assert rejection.index is None


def test_a_record_over_the_size_limit_is_oversize() -> None:
    """Given a record one byte over MAX_RECORD_BYTES, then it is rejected before parsing."""
    body = record(item(id="big"))
    raw = body + b" " * (MAX_RECORD_BYTES + 1 - len(body))

    decoded = decode_signals(raw)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason == f"oversize: record is {MAX_RECORD_BYTES + 1} bytes, limit 1048576"
    assert rejection.raw == raw
    assert rejection.index is None


def test_a_batch_over_the_signal_limit_is_oversize() -> None:
    """Given an array of MAX_BATCH_SIGNALS + 1 items, then the record is rejected whole."""
    raw = record([{}] * (MAX_BATCH_SIGNALS + 1))

    decoded = decode_signals(raw)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason == f"oversize: batch of {MAX_BATCH_SIGNALS + 1}, limit 10000"
    assert rejection.raw == raw
    assert rejection.index is None


# --- invalid signals --------------------------------------------------------------------------

INVALID_SIGNALS = [
    pytest.param(item(type="drop_tables"), "type", "drop_tables", id="unknown-type"),
    pytest.param(item(workspace_id="../etc"), "workspace_id", "../etc", id="ws-path"),
    pytest.param(item(workspace_id=""), "workspace_id", None, id="ws-empty"),
    pytest.param(item(workspace_id="a" * 65), "workspace_id", "a" * 65, id="ws-too-long"),
    pytest.param(item(workspace_id="ws 1"), "workspace_id", "ws 1", id="ws-space"),
    pytest.param(item(workspace_id="-ws"), "workspace_id", "-ws", id="ws-leading-dash"),
    pytest.param(item(workspace_id=7), "workspace_id", None, id="ws-not-a-string"),
    pytest.param(item(workspace_id=...), "workspace_id", None, id="ws-missing"),
    pytest.param(
        item(occurred_at="2024-01-01T00:00:00"), "occurred_at", "2024-01-01T00:00:00", id="naive"
    ),
    pytest.param(item(occurred_at="yesterday"), "occurred_at", "yesterday", id="not-a-time"),
    pytest.param(item(role="admin-override"), "role", "admin-override", id="extra-field"),
    pytest.param(
        item(attributes={f"k{n}": n for n in range(17)}), "attributes", None, id="17-attributes"
    ),
    pytest.param(
        item(attributes={"note": "s3cr3t" * 43}), "attributes.note", "s3cr3t" * 43, id="long-value"
    ),
    pytest.param(
        item(attributes={"nested": {"token": "tok-123"}}),
        "attributes.nested",
        "tok-123",
        id="nested",
    ),
    pytest.param(item(schema_version=2), "schema_version", None, id="schema-version"),
    pytest.param(item(id="has space"), "id", "has space", id="bad-id"),
    pytest.param(item(source="evil source!"), "source", "evil source!", id="bad-source"),
]


@pytest.mark.parametrize(("value", "field", "secret"), INVALID_SIGNALS)
def test_an_invalid_signal_is_rejected_naming_the_field_not_the_value(
    value: dict[str, Any], field: str, secret: str | None
) -> None:
    """Given a single signal breaking one rule, then it is rejected with the field named
    and without the offending value echoed, and the original bytes are kept."""
    raw = record(value)

    decoded = decode_signals(raw)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason.startswith(f"invalid: {field}")
    assert rejection.raw == raw
    assert rejection.index is None
    if secret is not None:
        assert secret not in rejection.reason


def test_sixteen_attributes_and_a_256_char_value_are_accepted() -> None:
    """Given the attribute limits exactly, then the signal is accepted."""
    attributes: dict[str, Any] = {f"k{n}": n for n in range(15)}
    attributes["note"] = "x" * 256

    [signal] = decode_signals(record(item(attributes=attributes))).signals

    assert len(signal.attributes) == 16
    assert signal.attributes["note"] == "x" * 256


def test_a_64_char_workspace_id_is_accepted() -> None:
    """Given a workspace id at the length limit, then the signal is accepted."""
    [signal] = decode_signals(record(item(workspace_id="a" * 64))).signals

    assert signal.workspace_id == "a" * 64


def test_a_reason_is_bounded_in_length() -> None:
    """Given a signal breaking many rules at once, then the reason is at most 400 chars."""
    value = {f"extra_{n}": n for n in range(50)}

    [rejection] = decode_signals(record(value)).rejections

    assert rejection.reason.startswith("invalid: ")
    assert len(rejection.reason) == 400


def test_an_invalid_attribute_key_is_not_echoed_in_the_reason() -> None:
    """Given an attribute key that is itself data (an email), then the reason omits it."""
    raw = record(item(attributes={"alice@example.com": "x"}))

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason.startswith("invalid: attributes")
    assert "alice@example.com" not in rejection.reason


# --- mixed batches ----------------------------------------------------------------------------


def test_a_mixed_batch_keeps_good_items_and_rejects_bad_ones_by_index() -> None:
    """Given a batch of good, bad, non-object and good items, then the good ones are accepted
    in order and each bad one is rejected with its index and its original content."""
    bad = item(workspace_id="../etc")
    batch = [item(id="first"), bad, 42, item(type="followup_due")]

    decoded = decode_signals(record(batch))

    assert [s.id for s in decoded.signals] == ["first", derived_id(item(type="followup_due"))]
    assert [s.type for s in decoded.signals] == [
        SignalType.HEALTH_DEGRADED,
        SignalType.FOLLOWUP_DUE,
    ]
    assert [r.index for r in decoded.rejections] == [1, 2]
    first, second = decoded.rejections
    # The item as the producer sent it: no derived id was added to it.
    assert orjson.loads(first.raw) == bad
    assert "id" not in orjson.loads(first.raw)
    assert first.reason.startswith("invalid: workspace_id")
    assert "../etc" not in first.reason
    assert second.raw == b"42"
    assert second.reason.startswith("invalid: ")


def test_a_batch_item_rejection_carries_the_item_not_the_whole_record() -> None:
    """Given a batch with one bad item, then its raw bytes are that item only."""
    batch = [item(id="ok", attributes={"padding": "p" * 200}), item(id="bad", type="nope")]

    [rejection] = decode_signals(record(batch)).rejections

    assert rejection.index == 1
    assert orjson.loads(rejection.raw) == batch[1]
    assert b"padding" not in rejection.raw


def test_a_deeply_nested_batch_item_is_rejected_not_raised() -> None:
    """Given a batch whose item nests 300 levels deep (parseable by orjson.loads), when
    decoded, then the item is rejected with its index instead of the decoder raising."""
    raw = b'[{"a":' + b"[" * 300 + b"]" * 300 + b"}]"

    decoded = decode_signals(raw)

    assert decoded.signals == []
    assert [r.index for r in decoded.rejections] == [0]
