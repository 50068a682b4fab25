"""Reading again the records Faust's stream skipped, for the aggregate agent to fold in order.

Around a rebalance, Faust's stream drops the records it had already fetched when their
generation no longer matches, or while its flow control is paused, and acks them
(faust-streaming #216/#221: "so the lag does not grow"). Acked, they are committed once the
records after them are: nobody ever folds them, and the workspaces they were about decide
differently from then on (found by tests/integration/test_exactly_once.py: record 1 of a
partition, never stored, skipped after a rebalance; hundreds of decisions a single owner would
not make).

The aggregate notices the jump in offsets and reads the skipped range itself, with a consumer
of its own (no group, one per worker), rather than seek Faust's: a seek cannot tell records
Faust drops again from ones it delivers, and Faust's seek races its consumer thread. Offsets
that hold no record (transaction markers, compacted or deleted records) are simply not there.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from agents.own_consumer import OwnConsumer
from engine.broker_retry import retrying

READ_TIMEOUT_SECONDS = 30.0


class GapReader:
    """The records of a partition between two offsets, read with a consumer of its own."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        # Earliest: a range that begins before the log does (retention) starts where it does.
        self._consumer = OwnConsumer(bootstrap, auto_offset_reset="earliest")
        self._lock = asyncio.Lock()

    async def read(
        self, topic: str, partition: int, start: int, end: int
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """The records at offsets start <= offset < end, in order; TimeoutError if the
        partition was not read that far within READ_TIMEOUT_SECONDS."""
        async with self._lock:
            consumer = await self._consumer.get()
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            records: list[ConsumerRecord[bytes, bytes]] = []
            deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}/{partition} not read from {start} to {end}")
                batches = await consumer.getmany(tp, timeout_ms=500)
                for record in batches.get(tp, []):
                    if record.offset >= end:
                        return records
                    records.append(record)
            return records

    async def committed(self, group: str, topic: str, partition: int) -> int | None:
        """The group's committed offset of the partition; None if it committed none."""
        offsets = await committed_offsets(self._bootstrap, group, [(topic, partition)])
        return offsets.get((topic, partition))

    async def stop(self) -> None:
        """Close the consumer, if one was started."""
        await self._consumer.stop()


async def committed_offsets(
    bootstrap: str, group: str, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], int | None]:
    """The group's committed offset (the next to consume) per (topic, partition); None for a
    partition it committed nothing on."""

    async def ask() -> dict[TopicPartition, OffsetAndMetadata]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            return await admin.list_consumer_group_offsets(  # type: ignore[no-any-return]
                group, partitions=[TopicPartition(topic, partition) for topic, partition in keys]
            )
        finally:
            await admin.close()

    offsets = await retrying(ask, "reading the group's committed offsets")
    return {
        (tp.topic, tp.partition): (meta.offset if meta.offset >= 0 else None)
        for tp, meta in offsets.items()
    }
