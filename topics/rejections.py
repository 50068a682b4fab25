"""What a rejected input becomes: a dead-letter record and a redacted signal.rejected entry."""

from __future__ import annotations

from datetime import datetime

import orjson

from tables.windows import SourcePosition
from topics.codec import Rejection
from topics.ids import stable_id
from topics.ledger import LedgerEntry, LedgerKind
from topics.signals import is_workspace_id


def dlq_headers(rejection: Rejection, source: SourcePosition) -> list[tuple[str, bytes]]:
    """Headers that say where the dead-lettered bytes came from and why they were refused."""
    headers = [
        ("autopilot.reason", rejection.reason.encode()),
        ("autopilot.source.topic", source.topic.encode()),
        ("autopilot.source.partition", str(source.partition).encode()),
        ("autopilot.source.offset", str(source.offset).encode()),
    ]
    if rejection.index is not None:
        headers.append(("autopilot.source.index", str(rejection.index).encode()))
    return headers


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
