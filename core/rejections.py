"""What a rejected input becomes: a dead-letter record and a redacted signal.rejected entry."""

from __future__ import annotations

import hashlib
from datetime import datetime

import orjson

from core.codec import Rejection
from core.windows import SourcePosition
from topics import headers
from topics.ids import stable_id
from topics.ledger import LedgerEntry, LedgerKind
from topics.signals import is_workspace_id

# Half the broker's default record limit (1 MiB): room for headers, key and batch framing.
DEAD_LETTER_WHOLE_BYTES = 512 * 1024
# What a cut dead letter keeps: enough to see what the producer sent.
DEAD_LETTER_CUT_BYTES = 64 * 1024


def dlq_headers(rejection: Rejection, source: SourcePosition) -> list[tuple[str, bytes]]:
    """Headers that say where the dead-lettered bytes came from and why they were refused."""
    written = [
        (headers.REASON, rejection.reason.encode()),
        (headers.SOURCE_TOPIC, source.topic.encode()),
        (headers.SOURCE_PARTITION, str(source.partition).encode()),
        (headers.SOURCE_OFFSET, str(source.offset).encode()),
    ]
    if rejection.index is not None:
        written.append((headers.SOURCE_INDEX, str(rejection.index).encode()))
    return written


def dead_letter_value(raw: bytes | None) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value a dead letter stores for refused bytes, and the headers that say how.

    Whole up to DEAD_LETTER_WHOLE_BYTES. Past that only the first DEAD_LETTER_CUT_BYTES, with
    the whole value's size and SHA-256: a compressed batch can carry a record far over the
    broker's 1 MiB limit, and a dead letter that the broker refuses would stop its partition.
    """
    if raw is None:
        return b"", [(headers.VALUE_NULL, b"true")]
    if len(raw) <= DEAD_LETTER_WHOLE_BYTES:
        return raw, []
    return raw[:DEAD_LETTER_CUT_BYTES], [
        (headers.VALUE_CUT, b"true"),
        (headers.VALUE_BYTES, str(len(raw)).encode()),
        (headers.VALUE_SHA256, hashlib.sha256(raw).hexdigest().encode()),
    ]


def rejection_entry(
    rejection: Rejection, source: SourcePosition, recorded_at: datetime
) -> LedgerEntry:
    """The signal.rejected ledger entry: the reason and the position, never the payload."""
    entry_id = stable_id("rej", source.topic, source.partition, source.offset, rejection.index)
    return LedgerEntry(
        entry_id=entry_id,
        kind=LedgerKind.SIGNAL_REJECTED,
        workspace_id=claimed_workspace(rejection.raw),
        correlation_id=entry_id,
        causation_id=entry_id,
        recorded_at=recorded_at,
        payload={
            "reason": rejection.reason,
            "source": {
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
                "index": rejection.index,
            },
        },
    )


def claimed_workspace(raw: bytes) -> str | None:
    """The workspace a refused input names, when it names a valid one; else None."""
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = item.get("workspace_id") if isinstance(item, dict) else None
    return value if is_workspace_id(value) else None
