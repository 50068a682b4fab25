"""Reading the ledger topic from the beginning with a plain aiokafka consumer."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from topics.ledger import LedgerEntry


async def read_ledger(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[LedgerEntry]], bool],
    timeout: float,
) -> list[LedgerEntry]:
    """Entries from offset 0 until `until(entries)` holds; TimeoutError after `timeout` seconds."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    entries: list[LedgerEntry] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(entries):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"ledger {topic}: condition not met after {timeout:.0f} s "
                    f"({len(entries)} entries read)"
                )
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batches.values():
                entries.extend(LedgerEntry.model_validate_json(r.value) for r in records)
    finally:
        await consumer.stop()
    return entries
