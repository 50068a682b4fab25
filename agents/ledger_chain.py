"""The worker's end of the ledger chain: every entry it writes is sealed onto its chain's head.

Heads are kept in memory per ledger partition. They are learnt by reading the partition (after
flushing this worker's own pending writes) the first time the worker writes to it, and forgotten
when the partition is assigned or revoked, because another worker may have written to it since.
A per-partition lock keeps sealing and queueing in one order, so the records land in the order
their links were made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from agents.own_consumer import OwnConsumer
from core.chain import chain_of_entry, heads_of, seal
from engine.broker_retry import retrying
from projections.ledger_reader import read_partitions_to_end
from topics.errors import AutopilotError
from topics.kafka_security import PLAINTEXT, KafkaSecurity
from topics.ledger import LedgerEntry
from topics.shards import Shards

logger = logging.getLogger(__name__)

# Reading a partition's heads longer than this fails the write (and so the agent, loudly).
LOAD_TIMEOUT_SECONDS = 120.0


class LedgerChain:
    """Seals and sends ledger entries; one per worker process."""

    def __init__(
        self,
        producer: Callable[[], Any],
        bootstrap: str,
        topic: str,
        partitions: int,
        key: bytes | None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._shards = Shards(partitions)
        self._key = key
        self._heads: dict[int, dict[str, str]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # Partitions this worker queued entries for: only those need a flush before a read.
        self._written: set[int] = set()
        self._forgotten: dict[int, int] = {}
        self._consumer = OwnConsumer(bootstrap, security=security)
        self._reading = asyncio.Lock()

    def partition_of(self, entry: LedgerEntry, shard: int | None) -> int:
        """The ledger partition of an entry: its workspace's shard, else the one given."""
        if entry.workspace_id:
            return self._shards.owner(entry.workspace_id)
        if shard is None:
            raise ValueError(f"ledger entry {entry.entry_id} names no workspace and no shard")
        return shard

    async def send(self, entry: LedgerEntry, shard: int | None = None) -> Awaitable[Any]:
        """Seal the entry onto its chain and queue it; the awaitable is the broker's ack."""
        partition = self.partition_of(entry, shard)
        lock = self._locks.get(partition)
        if lock is None:
            lock = self._locks[partition] = asyncio.Lock()
        async with lock:
            heads = self._heads.get(partition)
            while heads is None:
                forgotten = self._forgotten.get(partition, 0)
                loaded = await self._load(partition)
                # A rebalance while reading: what was read may predate another's writes.
                if self._forgotten.get(partition, 0) == forgotten:
                    heads = self._heads[partition] = loaded
            chain = chain_of_entry(entry, partition)
            record, sealed = seal(entry, heads.get(chain), self._key)
            key = entry.workspace_id.encode() if entry.workspace_id else None
            try:
                delivery = await self._producer().send(
                    self._topic, key, record, partition=partition, timestamp=None, headers=None
                )
            except BaseException:
                # Not queued: the head did not move, but learn it again to be sure.
                self._heads.pop(partition, None)
                raise
            heads[chain] = sealed
            self._written.add(partition)
            return delivery  # type: ignore[no-any-return]

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions another worker may have written to: their heads are read again."""
        for partition in partitions:
            self._heads.pop(partition, None)
            self._forgotten[partition] = self._forgotten.get(partition, 0) + 1

    async def stop(self) -> None:
        """Close the reading consumer, if one was started."""
        await self._consumer.stop()

    async def _load(self, partition: int) -> dict[str, str]:
        began = time.monotonic()
        if partition in self._written:
            # This worker's own entries still queued for the partition must be read too.
            await self._producer().flush()
        tp = TopicPartition(self._topic, partition)
        try:
            async with self._reading:
                consumer = await self._consumer.get()
                read = await retrying(
                    lambda: read_partitions_to_end(consumer, [tp], timeout=LOAD_TIMEOUT_SECONDS),
                    "reading a ledger partition's chain heads",
                )
        except TimeoutError as exc:
            raise AutopilotError(
                f"ledger partition {partition} not read to its end in "
                f"{LOAD_TIMEOUT_SECONDS:.0f} s; is the broker overloaded?"
            ) from exc
        except KafkaError as exc:
            raise AutopilotError(
                f"cannot read ledger partition {partition} to continue its chains: {exc}"
            ) from exc
        records = [r.value for r in read[tp] if r.value is not None]
        heads = heads_of(records, partition)
        logger.info(
            "ledger chain heads read",
            extra={
                "partition": partition,
                "records": len(records),
                "chains": len(heads),
                "seconds": round(time.monotonic() - began, 3),
            },
        )
        return heads
