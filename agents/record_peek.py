"""What a jump in a partition's offsets holds: committed records, or nothing a reader ever sees.

The command lanes are written in transactions (the signal stage commits each batch's commands
with its decisions), so their offsets are not consecutive for a `read_committed` reader: each
transaction's commit marker takes an offset, and so does every record of an aborted one. The
executors' guards against records Faust skipped (agents/offset_guard.py) and the lane gate
(agents/lanes.py) tell such a jump from a real backlog or a real gap by peeking: reading the
range with a consumer of their own, from its start to the first committed record.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from agents.own_consumer import OwnConsumer
from topics.kafka_security import PLAINTEXT, KafkaSecurity

logger = logging.getLogger(__name__)

# A peek that takes longer answers "a record may be there": the callers then wait or seek, as
# they would without peeking.
PEEK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Peek:
    """The first committed record at or after the start (None: none before the end), and the
    offset read up to: every offset below `reached` that is not `first` holds no record."""

    first: int | None
    reached: int


class RecordPeek:
    """Peeks at ranges of partitions with one `read_committed` consumer, one range at a time."""

    def __init__(self, bootstrap: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self._consumer = OwnConsumer(bootstrap, security=security, isolation_level="read_committed")
        self._lock = asyncio.Lock()

    async def first_record(self, topic: str, partition: int, start: int, end: int) -> Peek:
        """The first committed record of the partition in [start, end)."""
        if start >= end:
            return Peek(None, start)
        tp = TopicPartition(topic, partition)
        async with self._lock:
            try:
                async with asyncio.timeout(PEEK_SECONDS):
                    return await self._read(tp, start, end)
            except (TimeoutError, KafkaError) as exc:
                logger.info(
                    "peek not answered; assuming a record is there",
                    extra={"topic": topic, "partition": partition, "error": repr(exc)},
                )
                return Peek(start, start)

    async def stop(self) -> None:
        """Close the consumer, if one was started."""
        await self._consumer.stop()

    async def _read(self, tp: TopicPartition, start: int, end: int) -> Peek:
        consumer = await self._consumer.get()
        consumer.assign([tp])
        consumer.seek(tp, start)
        while True:
            got = await consumer.getmany(tp, timeout_ms=100, max_records=1)
            for record in got.get(tp, []):
                if record.offset < end:
                    return Peek(record.offset, record.offset)
                return Peek(None, end)
            position = await consumer.position(tp)
            if position >= end:
                return Peek(None, end)
            # Past the last stable offset lie records of transactions still open: not yet
            # committed, so nothing to see (or wait for) yet.
            stable = consumer.last_stable_offset(tp)
            if stable is not None and position >= stable:
                return Peek(None, position)
