"""Rejected input: dead-letter headers and the redacted signal.rejected ledger entry."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
import pytest

from core.codec import Rejection, decode_signals
from core.ledger_entries import claimed_workspace, rejection_entry
from core.rejections import (
    DEAD_LETTER_CUT_BYTES,
    DEAD_LETTER_WHOLE_BYTES,
    dead_letter_value,
    dlq_headers,
)
from core.windows import SourcePosition
from topics.ledger import LedgerKind

SOURCE = SourcePosition("signals", 4, 981)
RECORDED_AT = datetime(2024, 1, 1, 0, 7, tzinfo=UTC)
SECRET = "Bearer sk-live-0123456789"


def bad_signal(workspace_id: object = "ws-1") -> bytes:
    """A refused signal carrying a secret in a free-text attribute that is too long."""
    return orjson.dumps(
        {
            "workspace_id": workspace_id,
            "type": "webhook_failed",
            "occurred_at": "2024-01-01T00:00:00Z",
            "attributes": {"error": SECRET * 20},
        }
    )


def test_dlq_headers_say_why_and_where_for_a_whole_record() -> None:
    """Given a whole-record rejection, then the headers carry the reason and the source
    position, and no index."""
    rejection = Rejection(reason="undecodable: not UTF-8 JSON", raw=b"\xff")

    assert dlq_headers(rejection, SOURCE) == [
        ("autopilot.reason", b"undecodable: not UTF-8 JSON"),
        ("autopilot.source.topic", b"signals"),
        ("autopilot.source.partition", b"4"),
        ("autopilot.source.offset", b"981"),
    ]


def test_dlq_headers_carry_the_index_of_a_batch_item() -> None:
    """Given a batch item rejection (index 0 too), then the index is the last header."""
    rejection = Rejection(reason="invalid: type: bad", raw=b"{}", index=0)

    headers = dlq_headers(rejection, SOURCE)

    assert headers[-1] == ("autopilot.source.index", b"0")
    assert len(headers) == 5


def test_a_rejection_entry_records_reason_and_position_never_the_payload() -> None:
    """Given a refused signal holding a secret, then the signal.rejected entry has the
    reason, the position and the claimed workspace, and no trace of the payload."""
    [rejection] = decode_signals(bad_signal()).rejections

    entry = rejection_entry(rejection, SOURCE, RECORDED_AT)

    assert entry.kind is LedgerKind.SIGNAL_REJECTED
    assert entry.workspace_id == "ws-1"
    assert entry.correlation_id == entry.entry_id
    assert entry.causation_id == entry.entry_id
    assert entry.policy_version is None
    assert entry.recorded_at == RECORDED_AT
    assert entry.payload.model_dump(mode="json") == {
        "reason": rejection.reason,
        "source": {"topic": "signals", "partition": 4, "offset": 981, "index": None},
    }
    assert entry.payload.reason == (
        "invalid: attributes.error: String should have at most 256 characters"
    )
    assert "sk-live" not in entry.model_dump_json()


def test_a_batch_item_rejection_entry_claims_the_items_workspace() -> None:
    """Given a batch whose second item is refused, then its entry names that item's
    workspace and its index."""
    good = orjson.loads(bad_signal("ws-0"))
    good["attributes"] = {}
    batch = b"[" + orjson.dumps(good) + b"," + bad_signal("ws-2") + b"]"
    [rejection] = decode_signals(batch).rejections

    entry = rejection_entry(rejection, SOURCE, RECORDED_AT)

    assert entry.workspace_id == "ws-2"
    assert entry.payload.source.index == 1


def test_rejection_entry_ids_are_deterministic_per_position() -> None:
    """Given the same position twice, then the same entry id; another offset or index
    (including whole record vs item 0) gives another id."""
    whole = Rejection(reason="invalid: empty batch", raw=b"[]")
    first = Rejection(reason="invalid: empty batch", raw=b"[]", index=0)
    later_time = datetime(2030, 1, 1, tzinfo=UTC)

    ids = [
        rejection_entry(whole, SOURCE, RECORDED_AT).entry_id,
        rejection_entry(whole, SOURCE, later_time).entry_id,
        rejection_entry(first, SOURCE, RECORDED_AT).entry_id,
        rejection_entry(whole, SourcePosition("signals", 4, 982), RECORDED_AT).entry_id,
        rejection_entry(whole, SourcePosition("signals", 5, 981), RECORDED_AT).entry_id,
    ]

    assert ids[0] == ids[1]
    assert ids[0].startswith("rej-")
    assert len(set(ids)) == 4


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        b"[]",
        b"42",
        b'[{"workspace_id": "ws-1"}]',
        b'{"type": "followup_due"}',
        b'{"workspace_id": "../etc"}',
        b'{"workspace_id": ""}',
        b'{"workspace_id": 7}',
        b'{"workspace_id": "ws 1"}',
        b'{"workspace_id": "' + b"a" * 65 + b'"}',
    ],
    ids=[
        "not-json",
        "array",
        "scalar",
        "batch-record",
        "no-workspace",
        "path",
        "empty",
        "number",
        "space",
        "too-long",
    ],
)
def test_no_workspace_is_claimed_unless_a_valid_one_is_named(raw: bytes) -> None:
    """Given input naming no valid workspace, then the entry has workspace_id None."""
    rejection = Rejection(reason="invalid: x", raw=raw)

    assert claimed_workspace(raw) is None
    assert rejection_entry(rejection, SOURCE, RECORDED_AT).workspace_id is None


def test_a_valid_workspace_is_claimed() -> None:
    """Given an object naming a valid workspace, then that workspace is claimed."""
    assert claimed_workspace(b'{"workspace_id": "ws-000042", "type": "nope"}') == "ws-000042"


def test_a_workspace_id_with_a_trailing_newline_is_not_claimed() -> None:
    """Given a signal refused for the workspace id "ws-1\\n", when its rejection entry is
    built, then it is recorded with no workspace instead of raising."""
    [rejection] = decode_signals(bad_signal("ws-1\n")).rejections

    entry = rejection_entry(rejection, SOURCE, RECORDED_AT)

    assert entry.workspace_id is None


def test_a_dead_letter_keeps_refused_bytes_whole_up_to_its_limit() -> None:
    """Given refused bytes of exactly the limit, then the dead letter holds them as they were,
    with no header about its value."""
    raw = b"x" * DEAD_LETTER_WHOLE_BYTES

    assert dead_letter_value(raw) == (raw, [])


def test_a_dead_letter_past_its_limit_keeps_the_first_bytes_with_size_and_digest() -> None:
    """Given refused bytes one byte over the limit, then the dead letter holds their first
    bytes, says it was cut, and gives the whole value's size and SHA-256."""
    raw = bytes(range(256)) * (DEAD_LETTER_WHOLE_BYTES // 256) + b"!"

    value, headers = dead_letter_value(raw)

    assert value == raw[:DEAD_LETTER_CUT_BYTES]
    assert headers == [
        ("autopilot.value-cut", b"true"),
        ("autopilot.value-bytes", str(DEAD_LETTER_WHOLE_BYTES + 1).encode()),
        ("autopilot.value-sha256", hashlib.sha256(raw).hexdigest().encode()),
    ]


def test_a_dead_letter_of_a_null_record_says_it_was_null() -> None:
    """Given a record with no value (a Kafka NULL), then the dead letter is empty and marked
    null, unlike a record whose value was zero bytes."""
    assert dead_letter_value(None) == (b"", [("autopilot.value-null", b"true")])
    assert dead_letter_value(b"") == (b"", [])
