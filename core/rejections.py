"""What a rejected input becomes on its dead-letter topic: the bytes kept, and headers that say
where they came from and why (its signal.rejected entry is built in core/ledger_entries.py)."""

from __future__ import annotations

import hashlib

from core.codec import Rejection
from core.windows import SourcePosition
from topics import headers

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
