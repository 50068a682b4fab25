"""A consumer group's committed offsets, asked of the broker (the executors' guards start each
partition's expectations from them)."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from engine.broker_retry import retrying
from topics.kafka_security import PLAINTEXT, KafkaSecurity


async def committed_offsets(
    bootstrap: str,
    group: str,
    keys: list[tuple[str, int]],
    security: KafkaSecurity = PLAINTEXT,
) -> dict[tuple[str, int], int | None]:
    """The group's committed offset (the next to consume) per (topic, partition); None for a
    partition it committed nothing on."""

    async def ask() -> dict[TopicPartition, OffsetAndMetadata]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_options())
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
