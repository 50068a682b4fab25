"""The signal stage on the engine, against the offline replay: one signal per record from any
client, a `read_committed` reader of the ledger sees every decision exactly once (no
de-duplication), the decisions equal the replay's, refused input is dead-lettered and on the
ledger, and every chain verifies."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.settings import Settings
from core.chain import ChainCheck, chain_of_entry, seal
from core.ledger_entries import folded_entry
from core.replay import replay_decisions
from core.windows import SourcePosition
from engine.batch_engine import BatchEngine
from engine.signal_stage import SignalStage, SignalTopics
from tests.integration.streams import publish_one_per_record
from tests.support.factories import command_payload, decision_payload, ledger_entry
from tools.workload import realistic_stream
from topics.ledger import DECISION_KINDS, LedgerKind, parse_entry
from topics.shards import shard_of
from topics.signals import signal_from

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
WAIT_SECONDS = 120.0


async def create_changelog(settings: Settings, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, settings.partitions, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()


async def read_all(settings: Settings, topic: str, until: int) -> list[tuple[int, bytes]]:
    """Every committed record of a topic, (partition, value), once there are `until` of them
    and nothing more arrives for two seconds."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + WAIT_SECONDS
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=300)
            fresh = [(r.partition, r.value) for rs in got.values() for r in rs if r.value]
            if fresh:
                records.extend(fresh)
                quiet_since = time.monotonic()
            elif len(records) >= until and time.monotonic() - quiet_since > 2.0:
                return records
        raise AssertionError(f"{len(records)} records on {topic}, expected {until}")
    finally:
        await consumer.stop()


async def test_one_signal_per_record_decided_exactly_once_as_the_replay_decides(
    settings: Settings, tmp_path: Path
) -> None:
    # Given 6,000 signals, one per record keyed by workspace, and two records no one can read
    signals = realistic_stream(
        workspaces=200, signals=6_000, start=START, span_seconds=300, monitoring=True
    )
    changelog = settings.topic("signal-stage-changelog")
    await create_changelog(settings, changelog)
    await publish_one_per_record(settings, signals)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("signals"), b"\xff not json", partition=1)
        await producer.send_and_wait(settings.topic("signals"), b'{"id": 7}', partition=2)
    finally:
        await producer.stop()
    expected = replay_decisions(
        signals, settings.window_config(), settings.policy(), settings.partitions
    )

    # When the signal stage runs on the engine
    topics = SignalTopics.named(settings.topic, changelog)
    stage = SignalStage(topics, settings.partitions, settings.policy(), settings.window_config())
    engine = BatchEngine(settings.kafka_bootstrap_servers or "", settings.app_id, stage, tmp_path)
    running = asyncio.create_task(engine.run())
    try:
        ledger = await read_all(settings, topics.ledger, until=len(expected) + 2)
    finally:
        engine.stop()
        await running

    # Then each decision is on the ledger exactly once, and they are the replay's
    entries = [parse_entry(value) for _, value in ledger]
    decisions = Counter((e.entry_id, e.kind.value) for e in entries if e.kind in DECISION_KINDS)
    assert [key for key, seen in decisions.items() if seen > 1] == []
    assert set(decisions) == {(d.decision_id, d.kind.value) for d in expected}
    # each recording the record its signal was read from
    records = await read_all(settings, topics.signals, until=len(signals) + 2)
    offsets: dict[int, int] = {}
    read_at: dict[tuple[int, int], bytes] = {}
    for partition, value in records:
        offset = offsets[partition] = offsets.get(partition, -1) + 1
        read_at[(partition, offset)] = value
    for entry in entries:
        if entry.kind in DECISION_KINDS:
            read = entry.payload.input["signal"]
            topic, partition, offset = read["source"]
            assert topic == topics.signals
            assert f'"id":"{read["id"]}"'.encode() in read_at[(partition, offset)]
    # every signal folded once, and both unreadable records rejected
    folded = [e for e in entries if e.kind is LedgerKind.SIGNALS_FOLDED]
    assert sum(e.payload.signals for e in folded) == len(signals)
    rejected = [e for e in entries if e.kind is LedgerKind.SIGNAL_REJECTED]
    assert len(rejected) == 2
    dead = await read_all(settings, topics.signals_dlq, until=2)
    assert sorted(value for _, value in dead) == [b'{"id": 7}', b"\xff not json"]
    # and every chain verifies, as `autopilot ledger verify` checks it
    check = ChainCheck(key=None)
    for partition in range(settings.partitions):
        for offset, (_, value) in enumerate(r for r in ledger if r[0] == partition):
            check.add(partition, offset, value)
    assert check.broken == {}


async def test_a_shard_first_run_on_an_older_ledger_continues_its_chains(
    settings: Settings, tmp_path: Path
) -> None:
    """Given a ledger written by an earlier version (schema 2: a workspace's decisions and
    actions on one chain, a shard's folds on another), when the signal stage first runs the
    shard, then its entries continue those chains from their last entries, and every chain
    verifies across the change of version."""
    assert settings.kafka_bootstrap_servers
    workspace = "ws-upgrade"
    shard = shard_of(workspace, settings.partitions)
    topics = SignalTopics.named(settings.topic, settings.topic("signal-stage-changelog"))
    await create_changelog(settings, topics.changelog)
    old = [
        ledger_entry(LedgerKind.DECISION_MADE, decision_payload("dec-old"), entry_id="dec-old"),
        ledger_entry(
            LedgerKind.ACTION_STARTED,
            command_payload(worker="w-old", lease_until=START.isoformat()),
            entry_id="act-old",
        ),
        folded_entry(3, SourcePosition(topics.signals, shard, 2), START),
    ]
    heads: dict[str, str] = {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for entry in old:
            named = workspace if entry.workspace_id else None
            v2 = entry.model_copy(update={"schema_version": 2, "workspace_id": named})
            chain = chain_of_entry(v2, shard)
            record, heads[chain] = seal(v2, heads.get(chain), None)
            await producer.send_and_wait(topics.ledger, record, partition=shard)
    finally:
        await producer.stop()
    signals = [
        signal_from(
            {
                "id": f"up-{n}",
                "workspace_id": workspace,
                "type": "webhook_failed",
                "occurred_at": START,
                "attributes": {"status": 503},
            }
        )
        for n in range(4)
    ]
    await publish_one_per_record(settings, signals)
    expected = replay_decisions(
        signals, settings.window_config(), settings.policy(), settings.partitions
    )
    assert expected, "the signals decide nothing: the test would show nothing"

    # When the signal stage runs the shard for the first time
    stage = SignalStage(
        topics,
        settings.partitions,
        settings.policy(),
        settings.window_config(),
        bootstrap=settings.kafka_bootstrap_servers,
    )
    engine = BatchEngine(settings.kafka_bootstrap_servers, settings.app_id, stage, tmp_path)
    running = asyncio.create_task(engine.run())
    try:
        ledger = await read_all(settings, topics.ledger, until=len(old) + len(expected) + 1)
    finally:
        engine.stop()
        await running

    # Then its first decision and its first fold follow the old heads of their chains
    written = [parse_entry(value) for _, value in ledger][len(old) :]
    first_decision = next(e for e in written if e.kind in DECISION_KINDS)
    first_fold = next(e for e in written if e.kind is LedgerKind.SIGNALS_FOLDED)
    assert (first_decision.schema_version, first_decision.prev_hash) == (3, heads[workspace])
    assert first_fold.prev_hash == heads[f"shard:{shard}"]
    # And every chain verifies, old entries by version 2's rule, new ones by version 3's
    check = ChainCheck(key=None)
    for offset, (_, value) in enumerate(r for r in ledger if r[0] == shard):
        check.add(shard, offset, value)
    assert check.broken == {}
