"""The gap reader: the records of a partition between two offsets, read on the real broker
with a consumer of its own, whatever else sits at those offsets."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.gap_reader import GapReader

pytestmark = pytest.mark.integration

WAIT_SECONDS = 60


async def new_topic(bootstrap: str) -> str:
    topic = f"gaps-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    return topic


async def everything(
    bootstrap: str, topic: str, partition: int, end: int
) -> list[tuple[int, bytes]]:
    """(offset, value) of every record of the partition once its log ends at `end` (the broker
    writes a transaction's marker when it gets to it), read with a plain consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    await consumer.start()
    try:
        while (await consumer.end_offsets([tp]))[tp] < end:
            await asyncio.sleep(0.1)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        found: list[tuple[int, bytes]] = []
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                found.append((record.offset, record.value))
        return found
    finally:
        await consumer.stop()


async def test_a_range_reads_its_records_in_order_across_transaction_markers(
    kafka_bootstrap: str,
) -> None:
    # Given partition 1 holding a-0, a-1, then a committed transaction (b-0, b-1 and its
    # marker, which the broker writes when it gets to it), then c-0, c-1: seven offsets, six
    # records
    topic = await new_topic(kafka_bootstrap)
    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    transactional = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"txn-{uuid.uuid4().hex[:8]}"
    )
    reader = GapReader(kafka_bootstrap)
    async with asyncio.timeout(WAIT_SECONDS):
        await plain.start()
        await transactional.start()
        try:
            for value in (b"a-0", b"a-1"):
                await plain.send_and_wait(topic, value, partition=1)
            async with transactional.transaction():
                for value in (b"b-0", b"b-1"):
                    await transactional.send(topic, value, partition=1)
            for value in (b"c-0", b"c-1"):
                await plain.send_and_wait(topic, value, partition=1)
            records = await everything(kafka_bootstrap, topic, 1, end=7)
            # When every range of the partition is read
            ranges = {
                (start, end): [(r.offset, r.value) for r in await reader.read(topic, 1, start, end)]
                for start in range(8)
                for end in range(start, 8)
            }
            empty = await reader.read(topic, 0, 0, 0)
        finally:
            await reader.stop()
            await transactional.stop()
            await plain.stop()

    # Then each is the records in that range, in offset order: the marker's offset (after b-1,
    # wherever the broker put it) has none
    assert [value for _, value in records] == [b"a-0", b"a-1", b"b-0", b"b-1", b"c-0", b"c-1"]
    assert len({offset for offset, _ in records}) == 6 and records[-1][0] <= 6
    for (start, end), got in ranges.items():
        assert got == [(o, v) for o, v in records if start <= o < end], (start, end)
    assert empty == []


async def test_the_committed_offset_is_the_groups_and_none_without_one(
    kafka_bootstrap: str,
) -> None:
    # Given a group that committed offset 2 on partition 0 of a topic
    topic = await new_topic(kafka_bootstrap)
    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    reader = GapReader(kafka_bootstrap)
    async with asyncio.timeout(WAIT_SECONDS):
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.commit({TopicPartition(topic, 0): 2})
        finally:
            await consumer.stop()
        # Then the reader finds it, and nothing for partition 1 or another group
        assert await reader.committed(group, topic, 0) == 2
        assert await reader.committed(group, topic, 1) is None
        assert await reader.committed(f"{group}-other", topic, 0) is None
