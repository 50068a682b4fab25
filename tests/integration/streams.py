"""Signals for integration tests: built by hand, published with Autopilot's own client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.client import SignalPublisher
from app.settings import Settings
from projections.ledger_reader import read_ledger
from tests.integration.conftest import WAIT_SECONDS
from topics.ledger import LedgerEntry, LedgerKind
from topics.shards import Shards
from topics.signals import Signal, SignalType, signal_from

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
T0S = int(T0.timestamp())


def signal(
    n: str, workspace: str, kind: SignalType, minute: float = 0, **attributes: Any
) -> Signal:
    """Signal `n` of a workspace, `minute` minutes after T0."""
    return signal_from(
        {
            "id": n,
            "workspace_id": workspace,
            "type": kind,
            "occurred_at": T0 + timedelta(minutes=minute),
            "source": "test",
            "attributes": attributes,
        }
    )


async def publish(settings: Settings, signals: list[Signal]) -> None:
    """Publish with the client (one record per shard batch) and wait for the broker."""
    assert settings.kafka_bootstrap_servers
    async with SignalPublisher(settings.kafka_bootstrap_servers, settings.topic("signals")) as pub:
        await pub.publish_many(signals)


def workspaces_of_shard(shard: int, count: int, partitions: int = 4) -> list[str]:
    """The first `count` workspace ids of the form ws-lane-N that the shard owns."""
    shards = Shards(partitions)
    found: list[str] = []
    n = 0
    while len(found) < count:
        workspace_id = f"ws-lane-{n}"
        if shards.owner(workspace_id) == shard:
            found.append(workspace_id)
        n += 1
    return found


async def read_topic(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first `count` records of a topic (all partitions), waited for with a timeout."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def publish_one_per_record(settings: Settings, signals: list[Signal]) -> None:
    """Publish one signal per record keyed by its workspace, as any Kafka client sends them."""
    assert settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for each in signals:
            await producer.send(
                settings.topic("signals"),
                each.model_dump_json().encode(),
                key=each.workspace_id.encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()


def folded(entries: list[LedgerEntry]) -> int:
    """How many signals the ledger says were folded (signals.folded, one entry per batch)."""
    return sum(int(e.payload.signals) for e in entries if e.kind is LedgerKind.SIGNALS_FOLDED)


async def wait_folded(settings: Settings, count: int, timeout: float = 120.0) -> None:
    """Until the ledger says `count` signals were folded (the worker's lag is 0)."""
    assert settings.kafka_bootstrap_servers
    await read_ledger(
        settings.kafka_bootstrap_servers,
        settings.topic("ledger"),
        until=lambda got: folded(got) >= count,
        timeout=timeout,
    )
