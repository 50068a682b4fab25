"""The Python producer client: signals batched per workspace shard, one Kafka record per batch.

Faust's cost is per Kafka record (shared/FAUST-NOTES.md), so the client groups signals by the
partition that owns their workspace (murmur2, the Java and aiokafka default partitioner) and
sends each group as one JSON-array record. Order per workspace is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from types import TracebackType

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from topics.batches import encode_batches
from topics.errors import BrokerUnavailableError
from topics.kafka_security import PLAINTEXT, KafkaSecurity
from topics.limits import MAX_BATCH_SIGNALS, MAX_RECORD_BYTES
from topics.shards import Shards
from topics.signals import Signal

# Signals per record the client sends by default.
DEFAULT_MAX_BATCH = 500


class SignalPublisher:
    """Publish signals to the signals topic in per-shard batches; use as an async context."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        linger_seconds: float = 0.05,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH_SIGNALS:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH_SIGNALS}")
        self.topic = topic
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=2 * MAX_RECORD_BYTES,
            compression_type=None,
            **security.client_options(),
        )
        self._shards = Shards(1)
        self._buffers: dict[int, list[Signal]] = {}
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self.records_sent = 0

    async def start(self) -> None:
        """Connect and learn the topic's shard count."""
        try:
            await self._producer.start()
            partitions = await self._producer.partitions_for(self.topic)
        except KafkaError as exc:
            await self._producer.stop()
            raise BrokerUnavailableError(f"cannot publish to {self.topic}: {exc}") from exc
        if not partitions:
            await self._producer.stop()
            raise BrokerUnavailableError(
                f"topic {self.topic} does not exist: run `autopilot topics` first"
            )
        self._shards = Shards(len(partitions))
        self._ticker = asyncio.create_task(self._tick())

    async def publish(self, signal: Signal) -> None:
        """Queue one signal; it is sent with its shard's batch (at max_batch or after linger)."""
        await self.publish_many((signal,))

    async def publish_many(self, signals: Iterable[Signal]) -> None:
        """Queue many signals, sending every shard batch that fills up."""
        async with self._lock:
            for signal in signals:
                shard = self._shards.owner(signal.workspace_id)
                buffer = self._buffers.setdefault(shard, [])
                buffer.append(signal)
                if len(buffer) >= self._max_batch:
                    await self._send(shard)

    async def flush(self) -> None:
        """Send every queued signal and wait until the broker has them all."""
        async with self._lock:
            for shard in list(self._buffers):
                await self._send(shard)
        await self._producer.flush()

    async def stop(self) -> None:
        """Flush and disconnect."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def __aenter__(self) -> SignalPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _send(self, shard: int) -> None:
        batch = self._buffers.pop(shard, [])
        if batch:
            await self._send_batch(shard, batch)

    async def _send_batch(self, shard: int, batch: list[Signal]) -> None:
        # Workers refuse records over the size limit: encode_batches splits to fit.
        for value in encode_batches(batch):
            await self._producer.send(self.topic, value, partition=shard)
            self.records_sent += 1

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._linger)
            async with self._lock:
                for shard in list(self._buffers):
                    await self._send(shard)
