"""`autopilot policy whatif`: the signal history run through the signal stage under the current
policy and a new one, and their decisions compared (core/policy_whatif.py).

Each shard (a partition of `signals` and the same partition of `control`) is read from its
first offset to its committed end and fed, twice, to the real signal stage
(engine/signal_stage.py) over a RocksDB store of its own in a temporary directory, from empty
state, one batch at a time, each batch committed before the next as the engine commits it.
Ticks, held signals, timers, operator switches, playbook runs and the limits thus behave as
they do live.

Order within a shard: the live engine reads a shard's two partitions side by side and its
stage applies a batch's control records before its signals, so which signals came before a
tick depends on how the fetches fell. Here the two partitions are merged by record timestamp
(each in offset order, a control record first on a tie) and cut into batches wherever a
control record follows a signal: every record is applied in the order it was written, which
is the order the live engine meets them in when it keeps up.

What the stage writes is not sent anywhere; only its decisions are kept. Records it re-routes
to another shard are not fed there either: the live run re-routed them already, so their
copies are in the history, on their own shard.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from tempfile import TemporaryDirectory

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from app.settings import Settings
from core.policy_whatif import Decided, History, Scope, WhatIfReport, compare
from core.rules import Policy
from engine.partition_store import PartitionStore
from engine.signal_stage import SignalStage, SignalTopics
from projections.ledger_reader import seek_to_start
from topics.errors import AutopilotError
from topics.kafka_security import KafkaSecurity
from topics.ledger import DecisionEntry, parse_entry

# Records per call of the stage: large enough that a batch's fixed costs (its state written to
# RocksDB, its signals.folded entry) are small beside its records, as under load live.
BATCH_RECORDS = 2_000
# A topic's records waiting for the other topic's before they can be merged; beyond this only
# the other one is fetched.
QUEUED_RECORDS = 10_000
# No record read for this long while a partition is behind its end: the broker is gone.
STALL_SECONDS = 120.0
# The stores' changelog is never written: the runs commit nothing to the broker.
CHANGELOG = "whatif.changelog"

Batch = dict[str, list[ConsumerRecord]]


class ShardFeed:
    """One shard's control and signal records merged in the order they were written, cut into
    the stage's batches (the stage applies a batch's control records first, so a control
    record that follows a signal starts a new batch)."""

    def __init__(self, control: str, signals: str, max_records: int = BATCH_RECORDS) -> None:
        self.control = control
        self.signals = signals
        self.max_records = max_records
        self._queued: dict[str, deque[ConsumerRecord]] = {control: deque(), signals: deque()}
        self._closed: set[str] = set()
        self._batch: Batch = {control: [], signals: []}
        self._size = 0
        self._ready: list[Batch] = []

    def add(self, topic: str, records: list[ConsumerRecord]) -> None:
        """The next records of one topic's partition, in offset order."""
        self._queued[topic].extend(records)

    def close(self, topic: str) -> None:
        """The topic's partition was read to its end."""
        self._closed.add(topic)

    def queued(self, topic: str) -> int:
        """How many of the topic's records wait for the other topic's to be merged."""
        return len(self._queued[topic])

    def take(self) -> list[Batch]:
        """The batches complete so far (the last one once both topics are closed)."""
        self._merge()
        ready, self._ready = self._ready, []
        return ready

    def _merge(self) -> None:
        control, signals = self._queued[self.control], self._queued[self.signals]
        while True:
            if control and signals:
                first = control[0].timestamp <= signals[0].timestamp
                topic = self.control if first else self.signals
            elif control and self.signals in self._closed:
                topic = self.control
            elif signals and self.control in self._closed:
                topic = self.signals
            else:
                break
            if topic == self.control and self._batch[self.signals]:
                self._flush()
            self._batch[topic].append(self._queued[topic].popleft())
            self._size += 1
            if self._size >= self.max_records:
                self._flush()
        if len(self._closed) == 2 and not control and not signals:
            self._flush()

    def _flush(self) -> None:
        if self._size:
            self._ready.append(self._batch)
            self._batch = {self.control: [], self.signals: []}
            self._size = 0


class PolicyRun:
    """One policy's run of the signal stage over the history, a shard at a time, from empty
    state; keeps the decisions it made."""

    def __init__(self, stage: SignalStage, root: Path) -> None:
        self.stage = stage
        self.root = root
        self.decided: list[Decided] = []
        self._store: PartitionStore | None = None
        self._partition = 0

    def open(self, partition: int) -> None:
        """Start a shard on an empty store."""
        self._partition = partition
        self._store = PartitionStore(self.root / str(partition), self.stage.changelog, partition)

    def feed(self, batch: Batch) -> None:
        """One batch through the stage, committed; its decisions kept."""
        assert self._store is not None, "open a shard first"
        out = self.stage.process(self._partition, batch, self._store)
        self._store.apply(None)
        self.stage.committed(self._partition)
        for record in out:
            if record.topic == self.stage.topics.ledger and record.value is not None:
                entry = parse_entry(record.value)
                if isinstance(entry, DecisionEntry):
                    self.decided.append(Decided.of(entry))

    def close(self) -> None:
        """The shard is done: its store is closed and deleted."""
        if self._store is not None:
            self._store.close()
            self._store = None
            shutil.rmtree(self.root / str(self._partition), ignore_errors=True)


def signal_stage(settings: Settings, topics: SignalTopics, policy: Policy) -> SignalStage:
    """The stage as the worker builds it (agents/signal_engine.py), without a broker: its
    chains start empty and are not signed (their hashes are not compared)."""
    return SignalStage(
        topics,
        settings.partitions,
        policy,
        settings.window_config(),
        max_future_seconds=settings.signal_max_future_seconds,
    )


async def what_if(
    settings: Settings, current: Policy, proposed: Policy, scope: Scope
) -> WhatIfReport:
    """Run the deployment's signal history under both policies and compare their decisions."""
    bootstrap = settings.kafka_bootstrap_servers or ""
    security = settings.kafka_security()
    topics = SignalTopics.named(settings.topic, CHANGELOG)
    await check_topics(bootstrap, topics, settings.partitions, security)
    counts = {topics.signals: 0, topics.control: 0}
    with TemporaryDirectory(prefix="autopilot-whatif-") as tmp:
        runs = [
            PolicyRun(signal_stage(settings, topics, current), Path(tmp) / "current"),
            PolicyRun(signal_stage(settings, topics, proposed), Path(tmp) / "new"),
        ]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **security.client_options(),
        )
        try:
            await consumer.start()
            for partition in range(settings.partitions):
                for run in runs:
                    run.open(partition)
                try:
                    async for batch in shard_batches(consumer, topics, partition):
                        for topic, records in batch.items():
                            counts[topic] += len(records)
                        for run in runs:
                            run.feed(batch)
                finally:
                    for run in runs:
                        run.close()
        except KafkaError as exc:
            raise AutopilotError(
                f"cannot read {topics.signals} and {topics.control} from {bootstrap} ({exc}): "
                "check KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        finally:
            await consumer.stop()
    return compare(
        runs[0].decided,
        runs[1].decided,
        current_version=current.version,
        proposed_version=proposed.version,
        scope=scope,
        history=History(settings.partitions, counts[topics.signals], counts[topics.control]),
    )


async def shard_batches(
    consumer: AIOKafkaConsumer, topics: SignalTopics, partition: int
) -> AsyncIterator[Batch]:
    """One shard's records from the first offset to the committed end, as the stage's batches."""
    feed = ShardFeed(topics.control, topics.signals)
    tps = [TopicPartition(topics.control, partition), TopicPartition(topics.signals, partition)]
    consumer.assign(tps)
    await seek_to_start(consumer, tps)
    ends = await consumer.end_offsets(tps)
    # By position, not by the last record's offset: transaction markers take offsets too.
    remaining: set[TopicPartition] = set()
    for tp in tps:
        if await consumer.position(tp) < ends[tp]:
            remaining.add(tp)
        else:
            feed.close(tp.topic)
    progress = time.monotonic()
    while remaining:
        wanted = [tp for tp in remaining if feed.queued(tp.topic) < QUEUED_RECORDS]
        got = await consumer.getmany(*(wanted or remaining), timeout_ms=500)
        for tp, records in got.items():
            feed.add(tp.topic, [r for r in records if r.offset < ends[tp]])
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
                feed.close(tp.topic)
        if got:
            progress = time.monotonic()
        elif time.monotonic() - progress > STALL_SECONDS:
            behind = ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in remaining))
            raise AutopilotError(
                f"{behind}: nothing read for {STALL_SECONDS:.0f} s before the end; "
                "check the broker at KAFKA_BOOTSTRAP_SERVERS and run again"
            )
        for batch in feed.take():
            yield batch
    for batch in feed.take():
        yield batch


async def check_topics(
    bootstrap: str, topics: SignalTopics, partitions: int, security: KafkaSecurity
) -> None:
    """Both input topics exist with one partition per shard; AutopilotError saying what to fix."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_options())
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        # Only listed topics are described: describing a missing one can auto-create it.
        for topic in (topics.signals, topics.control):
            if topic not in existing:
                raise AutopilotError(
                    f"no topic {topic} on the broker at {bootstrap}: "
                    "check KAFKA_BOOTSTRAP_SERVERS and AUTOPILOT_TOPIC_PREFIX"
                )
        described = await admin.describe_topics([topics.signals, topics.control])
    except KafkaError as exc:
        raise AutopilotError(
            f"cannot reach the broker at {bootstrap} ({type(exc).__name__}): "
            "check KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    finally:
        await admin.close()
    for description in described:
        count = len(description["partitions"])
        if count != partitions:
            raise AutopilotError(
                f"{description['topic']} has {count} partitions but AUTOPILOT_PARTITIONS is "
                f"{partitions}: set it to the deployment's shard count"
            )
