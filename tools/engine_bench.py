"""The engine's own cost: a stage that does little, against raw aiokafka on the same topic.

One JSON signal per record (as any Kafka client sends them), keyed by workspace. The stage
decodes each record, keeps a count per workspace in its state (so every batch has a
changelog), and emits one record per ten it reads (about the share of signals that lead to a
decision). The clock runs from the moment the engine owns every partition until a
`read_committed` consumer has seen every output: each batch's outputs, changelog and offsets
committed in its partition's transaction. Raw is a plain consumer with getmany + orjson.

    python -m tools.engine_bench [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka_admin import ensure_topics
from app.settings import load_settings
from core.replay import replay_decisions
from engine.batch_engine import BatchEngine
from engine.partition_store import PartitionStore
from engine.signal_stage import SignalStage, SignalTopics
from engine.transactions import Outgoing
from tools.broker import provide_bootstrap
from tools.workload import realistic_stream
from topics.signals import Signal

PARTITIONS = 8
WORKSPACES = 1_000
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


class CountStage:
    """Decode, count per workspace, emit one record in ten."""

    name = "bench"

    def __init__(self, prefix: str) -> None:
        self.inputs: tuple[str, ...] = (f"{prefix}signals",)
        self.changelog = f"{prefix}counts-changelog"
        self.output = f"{prefix}out"

    def process(
        self, partition: int, records: Mapping[str, list[ConsumerRecord]], store: PartitionStore
    ) -> list[Outgoing]:
        counts: dict[bytes, int] = {}
        out = []
        for record in records.get(self.inputs[0], []):
            signal = orjson.loads(record.value)
            key = signal["workspace_id"].encode()
            if key not in counts:
                counts[key] = int(store.get(key) or b"0")
            counts[key] += 1
            if record.offset % 10 == 0:
                out.append(Outgoing(self.output, partition, key, record.value))
        for key, count in counts.items():
            store.put(key, str(count).encode())
        return out

    def discard(self, partition: int) -> None:
        """Nothing is kept outside the store."""

    def committed(self, partition: int) -> None:
        """Nothing is counted."""

    async def prepare(self, partition: int, store: PartitionStore) -> None:
        """Nothing to stage before the first batch."""


async def _topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(f"{prefix}signals", PARTITIONS, 1),
                NewTopic(f"{prefix}out", PARTITIONS, 1),
                NewTopic(
                    f"{prefix}counts-changelog",
                    PARTITIONS,
                    1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
            ]
        )
    finally:
        await admin.close()


async def _publish(bootstrap: str, topic: str, records: int) -> int:
    """One signal per record; returns how many outputs the stage will emit."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    ends: dict[int, int] = {}
    try:
        sent = []
        for n in range(records):
            workspace = f"ws-{n % WORKSPACES:06d}"
            value = orjson.dumps(
                {
                    "id": f"b-{n}",
                    "workspace_id": workspace,
                    "type": "heartbeat",
                    "occurred_at": "2026-12-07T09:00:00+00:00",
                }
            )
            sent.append(await producer.send(topic, value, key=workspace.encode()))
        for delivery in sent:
            written = await delivery
            ends[written.partition] = max(ends.get(written.partition, 0), written.offset + 1)
    finally:
        await producer.stop()
    return sum((end + 9) // 10 for end in ends.values())


async def raw_rate(bootstrap: str, topic: str, total: int) -> float:
    """Signals/s for a plain consumer reading the topic from the start: getmany, and
    orjson-decode every record (a batch record counts its signals)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=0)  # join and fetch metadata outside the clock
        await consumer.seek_to_beginning()
        seen = 0
        started = time.perf_counter()
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    decoded = orjson.loads(record.value)
                    seen += len(decoded) if isinstance(decoded, list) else 1
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def _timed(
    bootstrap: str,
    engine: BatchEngine,
    topic: str,
    counted: Callable[[ConsumerRecord], bool],
    expected: int,
) -> float:
    """Seconds from the moment the engine owns every partition until a `read_committed` reader
    of `topic` has seen `expected` records that count."""
    running = asyncio.create_task(engine.run())
    reader = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        while len(engine.owned) < PARTITIONS:
            if running.done():
                running.result()
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        seen = 0
        while seen < expected:
            got = await reader.getmany(timeout_ms=200)
            seen += sum(counted(record) for batch in got.values() for record in batch)
            if running.done():
                running.result()
        return time.perf_counter() - started
    finally:
        await reader.stop()
        engine.stop()
        await running


async def _engine_rate(bootstrap: str, prefix: str, records: int, outputs: int) -> float:
    with tempfile.TemporaryDirectory(prefix="autopilot-engine-bench-") as data:
        stage = CountStage(prefix)
        engine = BatchEngine(bootstrap, f"ap-{prefix[:-1]}", stage, Path(data))
        return records / await _timed(bootstrap, engine, stage.output, _any, outputs)


async def signal_stage_rate(bootstrap: str, signals: list[Signal]) -> tuple[float, float]:
    """Raw and signal-stage rates (signals/s) on one topic of one signal per record: the stage
    runs the whole core (decode, fold, decide, ledger entries sealed, commands), timed until
    every decision an offline replay expects is committed on the ledger."""
    base = load_settings()
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={"topic_prefix": f"es{run}.", "app_id": f"ap-es{run}", "partitions": PARTITIONS}
    )
    await ensure_topics(settings, bootstrap)
    changelog = settings.topic("signal-stage-changelog")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(changelog, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        for signal in signals:
            await producer.send(
                settings.topic("signals"),
                signal.model_dump_json().encode(),
                key=signal.workspace_id.encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    expected = len(
        replay_decisions(signals, settings.window_config(), settings.policy(), PARTITIONS)
    )
    raw = await raw_rate(bootstrap, settings.topic("signals"), len(signals))
    topics = SignalTopics.named(settings.topic, changelog)
    stage = SignalStage(topics, PARTITIONS, settings.policy(), settings.window_config())
    with tempfile.TemporaryDirectory(prefix="autopilot-signal-stage-") as data:
        engine = BatchEngine(bootstrap, settings.app_id, stage, Path(data))
        seconds = await _timed(bootstrap, engine, topics.ledger, _decision, expected)
    return raw, len(signals) / seconds


def _any(record: ConsumerRecord) -> bool:
    return True


def _decision(record: ConsumerRecord) -> bool:
    return record.value is not None and b'"kind":"decision.' in record.value


async def measure(bootstrap: str, records: int, rounds: int) -> tuple[float, float]:
    """Median raw and engine rates (records/s) over `rounds` rounds on fresh topics."""
    raws, engines = [], []
    for number in range(1, rounds + 1):
        prefix = f"eb{uuid.uuid4().hex[:8]}."
        await _topics(bootstrap, prefix)
        outputs = await _publish(bootstrap, f"{prefix}signals", records)
        raw = await raw_rate(bootstrap, f"{prefix}signals", records)
        rate = await _engine_rate(bootstrap, prefix, records, outputs)
        raws.append(raw)
        engines.append(rate)
        print(f"engine round {number}: raw {raw:,.0f} records/s, engine {rate:,.0f} records/s")
    return statistics.median(raws), statistics.median(engines)


async def measure_signal_stage(bootstrap: str, rounds: int) -> tuple[float, float]:
    """Median raw and signal-stage rates over `rounds` rounds of make bench's workload, one
    signal per record."""
    signals = realistic_stream(
        workspaces=1_000, signals=100_000, start=START, span_seconds=600, monitoring=True
    )
    raws, rates = [], []
    for number in range(1, rounds + 1):
        raw, rate = await signal_stage_rate(bootstrap, signals)
        raws.append(raw)
        rates.append(rate)
        print(f"signal stage round {number}: raw {raw:,.0f} signals/s, stage {rate:,.0f}/s")
    return statistics.median(raws), statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    with provide_bootstrap(settings.kafka_bootstrap_servers, settings.cache_dir) as bootstrap:
        raw, rate = asyncio.run(measure(bootstrap, args.records, args.rounds))
        stage_raw, stage = asyncio.run(measure_signal_stage(bootstrap, args.rounds))
    print_figures(raw, rate, stage_raw, stage)


def print_figures(raw: float, rate: float, stage_raw: float, stage: float) -> None:
    """The engine's lines of `make bench`."""
    print(f"raw aiokafka, one signal per record:     {raw:>12,.0f} records/s (median)")
    print(f"engine, counting stage, transactional:  {rate:>12,.0f} records/s (median)")
    print(f"ratio engine / raw:                      {rate / raw:>12.3f}")
    print(f"raw aiokafka, bench workload per record: {stage_raw:>12,.0f} signals/s (median)")
    print(f"signal stage on the engine (in-process): {stage:>12,.0f} signals/s (median)")
    print(f"ratio signal stage / raw:                {stage / stage_raw:>12.3f}")


if __name__ == "__main__":
    main()
