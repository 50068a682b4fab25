"""Peeking at a lane written in transactions, on the real broker: the offsets a commit marker or
an aborted record takes hold nothing, and the executors' guards must not wait for them."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from agents.record_peek import Peek, RecordPeek
from app.settings import Settings

pytestmark = pytest.mark.integration


async def write(bootstrap: str, topic: str) -> None:
    """Partition 0: a committed transaction of two records (offsets 0, 1; marker 2), an aborted
    one of one record (3; marker 4), a committed one of one record (5; marker 6)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}.peek")
    await producer.start()
    try:
        for values, commit in (([b"a", b"b"], True), ([b"x"], False), ([b"c"], True)):
            await producer.begin_transaction()
            for value in values:
                await producer.send_and_wait(topic, value, partition=0)
            if commit:
                await producer.commit_transaction()
            else:
                await producer.abort_transaction()
    finally:
        await producer.stop()


async def test_a_peek_sees_committed_records_only(settings: Settings) -> None:
    """Given a lane partition holding two committed transactions around an aborted one, when
    peeking at ranges of it, then a range holding only markers and aborted records holds
    nothing (and says how far it was read), and one holding a committed record names it."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap
    topic = settings.topic("commands.critical")
    await write(bootstrap, topic)
    peek = RecordPeek(bootstrap)
    try:
        after_first = await peek.first_record(topic, 0, 2, 5)
        after_last = await peek.first_record(topic, 0, 6, 7)
        across = await peek.first_record(topic, 0, 2, 7)
        from_start = await peek.first_record(topic, 0, 0, 7)
    finally:
        await peek.stop()

    assert after_first == Peek(None, 5)
    assert after_last == Peek(None, 7)
    assert across == Peek(5, 5)
    assert from_start == Peek(0, 0)
