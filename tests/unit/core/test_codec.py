"""Decoding the signals topic: every input ends accepted or rejected with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from core.codec import DecodedRecord, decode_signals
from topics.limits import MAX_BATCH_SIGNALS, MAX_RECORD_BYTES
from topics.signals import SignalType

T0 = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200


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
    batch = [
        item(id="a"),
        item(id="b", type="followup_due", attributes={"topic": "renewal"}),
        item(id="c", workspace_id="ws-2"),
    ]

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
        {"attributes": {"reason": "disk fuller"}},
    ],
    ids=["workspace", "type", "occurred_at", "source", "attributes"],
)
def test_a_derived_id_changes_with_the_content(change: dict[str, Any]) -> None:
    """Given two id-less signals differing in one field, then their derived ids differ."""
    base = item(attributes={"reason": "disk full"})

    assert derived_id(base) != derived_id({**base, **change})


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


def undecodable(raw: bytes) -> str:
    """The reason a whole record was refused as undecodable, after checking it kept its bytes."""
    decoded = decode_signals(raw)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.kind == "undecodable"
    assert rejection.raw == raw
    assert rejection.index is None
    return rejection.reason


def test_no_value_is_undecodable() -> None:
    """Given a record with no value (a tombstone), then it is one undecodable rejection that
    says the record was null, not that it held zero bytes."""
    decoded = decode_signals(None)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason == "undecodable: null record (no value)"
    assert rejection.raw == b""
    assert rejection.index is None


def test_a_zero_length_value_is_undecodable_as_empty() -> None:
    """Given a record whose value is zero bytes (not null), when decoded, then the reason
    says it was empty and what to send instead."""
    reason = undecodable(b"")

    assert reason == "undecodable: empty value (0 bytes): send a JSON object or array"


@pytest.mark.parametrize("raw", [b" ", b"\n", b" \t\r\n  "], ids=["space", "newline", "mixed"])
def test_a_whitespace_only_value_is_undecodable_as_blank(raw: bytes) -> None:
    """Given a value of JSON whitespace only, when decoded, then the reason says so rather
    than calling it empty (it has bytes) or broken JSON."""
    reason = undecodable(raw)

    assert reason == "undecodable: only whitespace: send a JSON object or array"


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b'{"workspace_id": "ws-\xc3\x28", "type": "followup_due"}', 21),
        (b"\xff\xfe{}", 0),
        ('{"reason": "déjà vu \xe9"}'.encode("latin-1"), 13),
        ('{"reason": "déjà vu"}'.encode() + b"\xff", 23),
    ],
    ids=["bad-continuation", "utf16-bom", "latin-1", "after-multibyte"],
)
def test_invalid_utf8_is_undecodable_naming_the_first_bad_byte(raw: bytes, offset: int) -> None:
    """Given a JSON object holding a byte sequence that is not UTF-8, when decoded, then the
    reason gives the offset of the first invalid byte (counted in bytes)."""
    reason = undecodable(raw)

    assert reason == f"undecodable: invalid UTF-8 at byte {offset}: send JSON encoded as UTF-8"


def test_a_byte_order_mark_is_undecodable_and_says_to_drop_it() -> None:
    """Given a valid signal preceded by a UTF-8 byte order mark (as some Windows tools write
    it), when decoded, then the reason names the BOM and says to send JSON without it."""
    reason = undecodable(b"\xef\xbb\xbf" + record(item(id="bom")))

    assert reason == "undecodable: starts with a UTF-8 byte order mark: send JSON without a BOM"


@pytest.mark.parametrize(
    "raw",
    [b'{"id": "a"', b"[1, 2", b'{"id": "ab', b'{"workspace_id":', b'{"a": 1   ', b'["\\u12'],
    ids=["object", "array", "string", "after-key", "trailing-space", "escape"],
)
def test_truncated_json_is_undecodable_saying_it_ends_early(raw: bytes) -> None:
    """Given JSON cut off before the document is complete, when decoded, then the reason says
    it ends early and gives its length, so a producer can compare with what it sent."""
    reason = undecodable(raw)

    assert reason == f"undecodable: truncated: the JSON ends early, after {len(raw)} bytes"


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b'{"a": "x\x01y"}', 8),
        (b'["line one\nline two"]', 10),
        ('{"é": "ééx\x00y"}'.encode(), 13),
    ],
    ids=["soh", "newline", "after-multibyte"],
)
def test_a_raw_control_character_in_a_string_names_its_byte_and_says_escape_it(
    raw: bytes, offset: int
) -> None:
    """Given a string holding an unescaped control character, when decoded, then the reason
    gives its byte offset and says it must be escaped."""
    reason = undecodable(raw)

    assert reason == (
        f"undecodable: raw control character in a string at byte {offset}: "
        "escape it (\\n, \\t, \\u0000 to \\u001f)"
    )


def test_an_offset_counts_bytes_not_characters() -> None:
    """Given four-byte UTF-8 characters (emoji) before a bad spot, when decoded, then the
    offset in the reason is where the bad byte is in the record, not its character index
    (orjson reports characters)."""
    raw = '{"😀😀": "x\x01"}'.encode()
    in_bytes = raw.index(b"\x01")
    in_characters = raw.decode().index("\x01")

    reason = undecodable(raw)

    assert (in_bytes, in_characters) == (15, 9)
    assert reason.startswith(f"undecodable: raw control character in a string at byte {in_bytes}:")


@pytest.mark.parametrize(
    ("prefix", "offset"),
    [(b"", 1024), ('["é", {"a":'.encode(), 1034)],
    ids=["arrays", "after-multibyte"],
)
def test_nesting_deeper_than_the_parser_allows_is_undecodable_naming_the_limit(
    prefix: bytes, offset: int
) -> None:
    """Given JSON nested one level deeper than orjson's limit of 1024, when decoded, then the
    reason names the limit and the byte of the bracket that went past it; one level less
    decodes."""

    def nested(levels: int) -> bytes:
        inner = levels - prefix.count(b"[") - prefix.count(b"{")
        return prefix + b"[" * inner + b"]" * inner + b"}]" * bool(prefix)

    raw = nested(1025)

    reason = undecodable(raw)

    assert reason == f"undecodable: nested deeper than 1024 levels at byte {offset}"
    assert raw[offset : offset + 1] == b"["
    # One level less is parsed (and refused for its shape): the limit named is the real one.
    assert {r.kind for r in decode_signals(nested(1024)).rejections} == {"invalid"}


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b'{"a": "\\ud800"}', 7),
        (b'["\\udc00"]', 2),
        (b'["\\ud800\\u0041"]', 2),
        ('{"é": "é\\ud800"}'.encode(), 10),
    ],
    ids=["high-alone", "low-alone", "high-then-letter", "after-multibyte"],
)
def test_a_lone_surrogate_escape_is_undecodable_naming_its_byte(raw: bytes, offset: int) -> None:
    """Given a string with a \\uD800-\\uDFFF escape that is not half of a pair, when decoded,
    then the reason gives the byte offset of that escape."""
    reason = undecodable(raw)

    assert reason == (
        f"undecodable: lone surrogate escape at byte {offset}: \\ud800 to \\udfff "
        "must come as a high-low pair"
    )
    assert raw[offset : offset + 2] == b"\\u"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "unexpected character, expected a string key at byte 1"),
        (b"\x00\x01\x02", "unexpected character, expected a JSON value at byte 0"),
        (b"NaN", "unexpected character, expected a JSON value at byte 0"),
        (b"[1,]", "trailing comma is not allowed at byte 2"),
        ('{"é": 1} é'.encode(), "unexpected content after document at byte 10"),
    ],
    ids=["broken", "binary", "nan", "trailing-comma", "after-multibyte"],
)
def test_other_bytes_that_are_not_json_name_the_parser_message_and_byte(
    raw: bytes, reason: str
) -> None:
    """Given bytes that are UTF-8 but not JSON for any other reason, when decoded, then the
    reason is the parser's own short message and the byte offset where it stopped."""
    assert undecodable(raw) == f"undecodable: not JSON: {reason}"


def test_an_undecodable_reason_does_not_echo_the_input() -> None:
    """Given broken JSON holding a secret, when decoded, then no part of the secret reaches
    the reason (which goes to the ledger)."""
    raw = b'{"token": sk-live-0123456789}'

    reason = undecodable(raw)

    assert reason == "undecodable: not JSON: unexpected character, expected a JSON value at byte 10"
    assert "sk-live" not in reason


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
        item(attributes={"note": "tok-123"}), "attributes.note", "tok-123", id="unknown-attribute"
    ),
    pytest.param(
        item(attributes={"reason": "s3cr3t" * 43}),
        "attributes.reason",
        "s3cr3t" * 43,
        id="long-text",
    ),
    pytest.param(
        item(attributes={"reason": {"token": "tok-123"}}),
        "attributes.reason",
        "tok-123",
        id="nested",
    ),
    pytest.param(
        item(attributes={"health_score": "42"}), "attributes.health_score", None, id="numeric-str"
    ),
    pytest.param(
        item(type="queue_depth", attributes={"queue": "q-secret"}),
        "attributes.pending",
        "q-secret",
        id="gauge-missing",
    ),
    pytest.param(
        item(type="webhook_failed", attributes={"status": 5003}),
        "attributes.status",
        "5003",
        id="status-range",
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


def test_every_attribute_of_a_type_at_its_limit_is_accepted() -> None:
    """Given a webhook failure with every attribute at its limit, then it is accepted as is."""
    attributes = {
        "webhook_id": "w" * 128,
        "endpoint_id": "e" * 128,
        "status": 599,
        "attempt": 1000,
        "error": "x" * 256,
    }

    [signal] = decode_signals(record(item(type="webhook_failed", attributes=attributes))).signals

    assert signal.type is SignalType.WEBHOOK_FAILED
    assert signal.attributes == attributes


def test_a_64_char_workspace_id_is_accepted() -> None:
    """Given a workspace id at the length limit, then the signal is accepted."""
    [signal] = decode_signals(record(item(workspace_id="a" * 64))).signals

    assert signal.workspace_id == "a" * 64


def test_a_reason_is_bounded_in_length() -> None:
    """Given a signal breaking many rules at once, then the reason is at most 400 chars."""
    value = item(**{f"extra_{n}": n for n in range(50)})

    [rejection] = decode_signals(record(value)).rejections

    assert rejection.reason.startswith("invalid: ")
    assert len(rejection.reason) == 400


def test_an_invalid_attribute_key_is_not_echoed_in_the_reason() -> None:
    """Given an attribute key that is itself data (an email), then the reason omits it."""
    raw = record(item(attributes={"alice@example.com": "x"}))

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason == "invalid: attributes.<redacted>: Extra inputs are not permitted"


def with_number(signal: dict[str, Any], field: str, literal: bytes) -> bytes:
    """A record whose attribute `field` holds a number as written, even one orjson.dumps
    cannot write (an integer beyond 64 bits)."""
    raw = record({**signal, "attributes": {**signal["attributes"], field: 0}})
    return raw.replace(f'"{field}":0'.encode(), f'"{field}":'.encode() + literal)


@pytest.mark.parametrize(
    ("signal_type", "field", "literal", "bounds"),
    [
        ("queue_depth", "pending", b"18446744073709551616", "from 0 to 1000000000"),
        ("queue_depth", "pending", b"-9223372036854775809", "from 0 to 1000000000"),
        ("queue_depth", "pending", b"1" + b"0" * 30, "from 0 to 1000000000"),
        ("webhook_failed", "status", b"18446744073709551616", "from 100 to 599"),
    ],
    ids=["2**64", "below-int64", "10**30", "status"],
)
def test_an_integer_beyond_64_bits_is_out_of_range_not_of_the_wrong_type(
    signal_type: str, field: str, literal: bytes, bounds: str
) -> None:
    """Given an integer attribute written as a whole number too large for 64 bits (which
    orjson reads as a float), when decoded, then the reason says it is out of range with the
    field's own bounds, not that it is not an integer, and does not echo the number."""
    signal = item(type=signal_type, attributes={"queue": "q"} if field == "pending" else {})
    raw = with_number(signal, field, literal)

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason == (
        f"invalid: attributes.{field}: out of range: must be a whole number {bounds}"
    )
    assert literal.decode() not in rejection.reason
    assert "e+" not in rejection.reason
    # A number with a fraction is still refused for what it is.
    [fraction] = decode_signals(with_number(signal, field, b"1.5")).rejections
    assert fraction.reason == f"invalid: attributes.{field}: Input should be a valid integer"


def test_an_integer_beyond_64_bits_in_a_batch_refuses_only_its_item() -> None:
    """Given a batch whose second signal has a pending count of 2**64, when decoded, then
    the first is accepted and the second refused as out of range, with its index."""
    good = item(id="ok", type="queue_depth", attributes={"pending": 3})
    bad = record(item(id="big", type="queue_depth", attributes={"pending": 0}))
    raw = (
        b"["
        + record(good)
        + b","
        + bad.replace(b'"pending":0', b'"pending":18446744073709551616')
        + b"]"
    )

    decoded = decode_signals(raw)

    assert [s.id for s in decoded.signals] == ["ok"]
    [rejection] = decoded.rejections
    assert (rejection.index, rejection.reason) == (
        1,
        "invalid: attributes.pending: out of range: must be a whole number from 0 to 1000000000",
    )


def test_a_location_names_the_field_without_the_signal_type() -> None:
    """Given a webhook failure with a status out of range, then the reason locates the field
    as the producer wrote it (attributes.status), not pydantic's union branch."""
    raw = record(item(type="webhook_failed", attributes={"status": 600}))

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason == (
        "invalid: attributes.status: Input should be less than or equal to 599"
    )


def test_every_broken_rule_is_named_in_one_reason() -> None:
    """Given a signal with two bad fields, then one reason names both, so one fix round is
    enough."""
    raw = record(item(workspace_id="../etc", attributes={"health_score": 101}))

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason.startswith("invalid: workspace_id: ")
    assert "; attributes.health_score: Input should be less than or equal to 100" in (
        rejection.reason
    )


TYPE_REASON = (
    "invalid: type: unknown or missing signal type, expected one of: health_degraded, "
    "provisioning_needed, provisioning_failed, followup_due, webhook_failed, integration_offline, "
    "queue_depth, oldest_pending_age, publish_failed, error_reported, heartbeat"
)


@pytest.mark.parametrize(
    "signal_type",
    ["drop_tables", "Bearer sk-live-0123", "HEALTH_DEGRADED", 7, None, ["heartbeat"], ...],
    ids=["unknown", "secret", "wrong-case", "number", "null", "list", "missing"],
)
def test_an_unknown_type_lists_the_known_ones_and_does_not_echo_the_input(
    signal_type: Any,
) -> None:
    """Given a signal whose type is unknown, of the wrong JSON type or missing, then the
    reason lists every known type, and says nothing of what was sent."""
    raw = record(item(type=signal_type))

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason == TYPE_REASON
    assert rejection.raw == raw


# --- mixed batches ----------------------------------------------------------------------------


def test_a_mixed_batch_keeps_good_items_and_rejects_bad_ones_by_index() -> None:
    """Given a batch of good, bad, non-object and good items, then the good ones are accepted
    in order and each bad one is rejected with its index and its original content."""
    bad = item(workspace_id="../etc")
    followup = item(type="followup_due", attributes={})
    batch = [item(id="first"), bad, 42, followup]

    decoded = decode_signals(record(batch))

    assert [s.id for s in decoded.signals] == ["first", derived_id(followup)]
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
    assert second.reason == (
        "invalid: signal: Input should be a valid dictionary or object to extract fields from"
    )


def test_a_batch_item_rejection_carries_the_item_not_the_whole_record() -> None:
    """Given a batch with one bad item, then its raw bytes are that item only."""
    batch = [item(id="ok", attributes={"reason": "p" * 200}), item(id="bad", type="nope")]

    [rejection] = decode_signals(record(batch)).rejections

    assert rejection.index == 1
    assert orjson.loads(rejection.raw) == batch[1]
    assert b"p" * 200 not in rejection.raw


def test_a_deeply_nested_batch_item_is_rejected_not_raised() -> None:
    """Given a batch whose item nests 300 levels deep (parseable by orjson.loads), when
    decoded, then the item is rejected with its index instead of the decoder raising."""
    raw = b'[{"a":' + b"[" * 300 + b"]" * 300 + b"}]"

    decoded = decode_signals(raw)

    assert decoded.signals == []
    assert [r.index for r in decoded.rejections] == [0]


# --- event time too far ahead of the record ---------------------------------------------------

# A record written at T0 (epoch seconds, as Kafka timestamps it); the default limit is 300 s.
WRITTEN_AT = float(E0)


def at(seconds: float) -> str:
    """An occurred_at `seconds` after T0, as a producer writes it."""
    return (T0 + timedelta(seconds=seconds)).isoformat()


def future_reason(limit: int = 300) -> str:
    return f"invalid: occurred_at: more than {limit} s after the record was written"


def test_a_signal_exactly_at_the_future_limit_is_accepted() -> None:
    """Given a signal dated exactly 300 s after its record was written, then it is accepted."""
    decoded = decode_signals(record(item(id="edge", occurred_at=at(300))), WRITTEN_AT)

    assert [s.id for s in decoded.signals] == ["edge"]
    assert decoded.rejections == []


def test_a_signal_one_second_past_the_future_limit_is_refused() -> None:
    """Given a signal dated 301 s after its record was written, then it is refused as a
    whole record, saying the limit, with its bytes kept."""
    raw = record(item(id="ahead", occurred_at=at(301)))

    decoded = decode_signals(raw, WRITTEN_AT)

    assert decoded.signals == []
    [rejection] = decoded.rejections
    assert rejection.reason == future_reason()
    assert rejection.raw == raw
    assert rejection.index is None


@pytest.mark.parametrize(
    ("limit", "offset", "accepted"),
    [(0, 0, True), (0, 0.001, False), (60, 60, True), (60, 61, False), (86_400, 86_401, False)],
)
def test_the_future_limit_is_the_one_configured(limit: int, offset: float, accepted: bool) -> None:
    """Given a configured limit, then a signal up to exactly that far ahead is accepted and
    anything further is refused, naming the configured limit."""
    decoded = decode_signals(record(item(occurred_at=at(offset))), WRITTEN_AT, limit)

    assert len(decoded.signals) == int(accepted)
    assert [r.reason for r in decoded.rejections] == ([] if accepted else [future_reason(limit)])


def test_the_future_limit_is_measured_in_utc_whatever_the_offset_written() -> None:
    """Given the same instant 301 s ahead written with a +02:00 offset, then it is refused
    too: the limit compares instants, not wall-clock digits."""
    local = "2024-01-01T02:05:01+02:00"

    [rejection] = decode_signals(record(item(occurred_at=local)), WRITTEN_AT).rejections

    assert rejection.reason == future_reason()


def test_a_type_held_until_due_may_be_as_far_ahead_as_its_own_limit() -> None:
    """Given follow-ups held until due for up to a day ahead, then one 6 hours ahead is
    accepted and one a day and a second ahead is refused naming that limit, while another type
    keeps the 300 s limit."""
    held = {"followup_due": 86_400}

    def decoded(kind: str, offset: float) -> DecodedRecord:
        return decode_signals(
            record(item(type=kind, occurred_at=at(offset), attributes={})), WRITTEN_AT, 300, held
        )

    assert len(decoded("followup_due", 6 * 3600).signals) == 1
    assert [r.reason for r in decoded("followup_due", 86_401).rejections] == [future_reason(86_400)]
    assert [r.reason for r in decoded("webhook_failed", 301).rejections] == [future_reason()]


def test_a_signal_from_the_past_is_never_too_far_ahead() -> None:
    """Given a signal dated a day before its record was written (a backfill), then it is
    accepted: only the future is bounded here; lateness is the window's business."""
    decoded = decode_signals(record(item(occurred_at=at(-86_400))), WRITTEN_AT)

    assert len(decoded.signals) == 1
    assert decoded.rejections == []


def test_without_a_record_time_the_future_is_not_bounded() -> None:
    """Given a record with no timestamp, then even a signal a year ahead is accepted."""
    decoded = decode_signals(record(item(occurred_at="2025-01-01T00:00:00Z")), None)

    assert len(decoded.signals) == 1


def test_in_a_batch_only_the_item_too_far_ahead_is_refused() -> None:
    """Given a batch whose middle item is 301 s ahead, then the others are accepted in
    order and only that item is refused, with its index and its own bytes."""
    batch = [
        item(id="now", occurred_at=at(0)),
        item(id="ahead", occurred_at=at(301)),
        item(id="edge", occurred_at=at(300)),
    ]

    decoded = decode_signals(record(batch), WRITTEN_AT)

    assert [s.id for s in decoded.signals] == ["now", "edge"]
    [rejection] = decoded.rejections
    assert (rejection.index, rejection.reason) == (1, future_reason())
    assert orjson.loads(rejection.raw) == batch[1]


def test_a_batch_item_that_is_invalid_and_ahead_is_refused_for_being_invalid() -> None:
    """Given a batch item both too far ahead and with a bad workspace id, then its reason
    is the validation error (what the producer must fix first); the rest is accepted."""
    batch = [item(id="ok"), item(id="bad", workspace_id="../etc", occurred_at=at(3600))]

    decoded = decode_signals(record(batch), WRITTEN_AT)

    assert [s.id for s in decoded.signals] == ["ok"]
    [rejection] = decoded.rejections
    assert rejection.index == 1
    assert rejection.reason.startswith("invalid: workspace_id: ")


# --- the kind of a rejection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (None, "undecodable"),
        (b"{not json", "undecodable"),
        (b"[]", "invalid"),
        (b"42", "invalid"),
        (record(item(workspace_id="../etc")), "invalid"),
        (record([{}] * (MAX_BATCH_SIGNALS + 1)), "oversize"),
    ],
    ids=["no-value", "not-json", "empty-batch", "scalar", "bad-signal", "batch-too-long"],
)
def test_a_rejection_says_its_kind_in_one_word(raw: bytes | None, kind: str) -> None:
    """Given refused input, then its kind is the class its reason starts with, which the
    ingest endpoint maps to an HTTP status (400 / 413 / 422)."""
    [rejection] = decode_signals(raw).rejections

    assert rejection.kind == kind
    assert rejection.reason.startswith(f"{kind}: ")


def test_a_record_too_far_ahead_is_an_invalid_rejection() -> None:
    """Given a signal too far ahead, then its rejection is of kind invalid (422, not 400)."""
    [rejection] = decode_signals(record(item(occurred_at=at(301))), WRITTEN_AT).rejections

    assert rejection.kind == "invalid"


# --- known bugs -------------------------------------------------------------------------------


def test_a_field_named_like_a_signal_type_is_still_named_in_the_reason() -> None:
    """Given a signal with an unknown top-level field called `heartbeat` and an unknown
    attribute called `queue_depth`, then the reason names both where they are."""
    raw = record(item(heartbeat=1, attributes={"queue_depth": 3}))

    [rejection] = decode_signals(raw).rejections

    assert rejection.reason == (
        "invalid: attributes.queue_depth: Extra inputs are not permitted; "
        "heartbeat: Extra inputs are not permitted"
    )
