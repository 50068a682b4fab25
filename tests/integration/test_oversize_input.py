"""Records too large for a dead letter: gzip batches can carry a record far over the broker's
1 MiB limit. Each is dead-lettered (cut, with its size and SHA-256) with its signal.rejected
entry, the worker never exits, and the partition goes on to the signals after it."""

from __future__ import annotations

import hashlib
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.dead_letter_writer import DeadLetterWriter
from app.settings import Settings
from core.rejections import DEAD_LETTER_CUT_BYTES
from tests.integration.commands import ledger_until
from tests.integration.conftest import StartWorker
from tests.integration.http import wait_for_workspace, wait_until_answers
from tests.integration.streams import T0S, read_topic
from topics import headers
from topics.ledger import LedgerKind
from topics.shards import Shards

pytestmark = pytest.mark.integration

WORKSPACE = "wsbig"


def signal(n: int, **attributes: object) -> dict[str, object]:
    return {
        "id": f"big-{n}",
        "workspace_id": WORKSPACE,
        "type": "heartbeat",
        "occurred_at": T0S + n,
        "attributes": attributes or {"component": "api", "version": "v1"},
    }


async def test_oversize_records_are_dead_lettered_cut_and_the_partition_goes_on(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    partition = Shards(settings.partitions).owner(WORKSPACE)
    # Given a worker
    worker = start_worker()
    await wait_until_answers(worker)
    # When a producer sends, gzip-compressed, one signal of 2 MiB, a batch of 1.6 MB,
    # a record with no value at all, and then a valid signal, all on the workspace's shard
    big = orjson.dumps(signal(1, component="api", version="v" * 2 * 1024 * 1024))
    batch = orjson.dumps([signal(100 + n, component="c" * 150, version="v1") for n in range(6000)])
    assert len(big) > 2 * 1024 * 1024 and 1_600_000 < len(batch) < 1_700_000
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        compression_type="gzip",
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        sent = []
        for value in (big, batch, None, orjson.dumps(signal(2))):
            meta = await producer.send_and_wait(
                settings.topic("signals"), value, key=WORKSPACE.encode(), partition=partition
            )
            sent.append(meta.offset)
    finally:
        await producer.stop()

    # Then the valid signal after them is folded
    state = await wait_for_workspace(worker, WORKSPACE, lambda body: body["hour"] is not None)
    assert state["hour"]["counts"] == {"heartbeat": 1}
    # And each refused record is on signals.dlq: the big ones cut, with size and SHA-256
    dead = await read_topic(settings.kafka_bootstrap_servers, settings.topic("signals.dlq"), 3)
    by_offset = {
        int(dict(r.headers)[headers.SOURCE_OFFSET]): (r.value, dict(r.headers)) for r in dead
    }
    assert sorted(by_offset) == sent[:3]
    for offset, original in ((sent[0], big), (sent[1], batch)):
        value, named = by_offset[offset]
        assert value == original[:DEAD_LETTER_CUT_BYTES]
        assert named[headers.VALUE_CUT] == b"true"
        assert named[headers.VALUE_BYTES] == str(len(original)).encode()
        assert named[headers.VALUE_SHA256] == hashlib.sha256(original).hexdigest().encode()
        assert named[headers.REASON].startswith(b"oversize: record is ")
    value, named = by_offset[sent[2]]
    assert value == b"" and named[headers.VALUE_NULL] == b"true"
    # And each has its signal.rejected entry on the ledger
    entries = await ledger_until(
        settings,
        lambda got: sum(e.kind is LedgerKind.SIGNAL_REJECTED for e in got) >= 3,
    )
    rejected = {
        e.payload.source.offset: e.payload.reason
        for e in entries
        if e.kind is LedgerKind.SIGNAL_REJECTED
    }
    assert sorted(rejected) == sent[:3]
    assert rejected[sent[0]] == f"oversize: record is {len(big)} bytes, limit 1048576"
    assert rejected[sent[1]] == f"oversize: record is {len(batch)} bytes, limit 1048576"
    # And the worker never exited
    assert worker.alive, worker.log_tail()
    assert "agent crashed" not in worker.log_path.read_text()


async def test_a_dead_letter_the_broker_refuses_is_recorded_without_its_value(
    kafka_bootstrap: str,
) -> None:
    # Given a dead-letter topic whose records may be at most 2,000 bytes
    topic = f"t{uuid.uuid4().hex[:10]}.signals.dlq"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        writer = DeadLetterWriter(
            lambda topic, key, value, partition, named: producer.send(
                topic, value, key=key, partition=partition, headers=named
            ),
            topic,
        )
        reason = [(headers.REASON, b"invalid: test")]
        # When a dead letter of 10,000 bytes is written, and one of 10 bytes
        delivery = await writer.send(b"ws-1", b"x" * 10_000, reason, 0)
        await delivery
        await (await writer.send(b"ws-1", b"y" * 10, reason, 0))
    finally:
        await producer.stop()
    # Then the first is on the topic without its value, saying why, and the second whole
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        records = []
        deadline = time.monotonic() + 30
        while len(records) < 2 and time.monotonic() < deadline:
            records.extend((await consumer.getmany(tp, timeout_ms=500)).get(tp, []))
    finally:
        await consumer.stop()
    assert [(r.value, dict(r.headers).get(headers.REFUSED)) for r in records] == [
        (b"", b"MessageSizeTooLargeError"),
        (b"y" * 10, None),
    ]
    assert all(dict(r.headers)[headers.REASON] == b"invalid: test" for r in records)
