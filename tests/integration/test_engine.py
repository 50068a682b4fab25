"""The engine on the real broker: each input's effects committed exactly once, across a
SIGKILL with the state restored from its changelog, and a frozen owner fenced.

Each test runs the counting stage (tests/integration/engine_app.py) in worker processes and
reads its output as any `read_committed` consumer would, without de-duplicating anything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.settings import load_settings
from engine.batch_engine import BatchEngine
from engine.partition_store import PartitionStore
from engine.transactions import Outgoing
from tests.integration.commands import ROOT
from tests.integration.engine_app import CountingStage
from tools.local_kafka import LocalKafka, assemble

pytestmark = pytest.mark.integration

PARTITIONS = 4
KEYS = 60
WAIT_SECONDS = 90.0


class Run:
    """One test's topics (their own prefix) and its engine processes."""

    def __init__(self, bootstrap: str, tmp_path: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"e{uuid.uuid4().hex[:10]}."
        self.app_id = f"engine-test-{self.prefix[:-1]}"
        self.tmp_path = tmp_path
        self.sent: Counter[bytes] = Counter()
        self.processes: list[subprocess.Popen[bytes]] = []

    async def create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(f"{self.prefix}in", PARTITIONS, 1),
                    NewTopic(f"{self.prefix}out", PARTITIONS, 1),
                    NewTopic(
                        f"{self.prefix}counts-changelog",
                        PARTITIONS,
                        1,
                        topic_configs={"cleanup.policy": "compact"},
                    ),
                ]
            )
        finally:
            await admin.close()

    async def produce(self, count: int, per_second: float | None = None) -> None:
        """`count` records keyed over KEYS keys (the default partitioner places them)."""
        # Idempotent, with a long timeout: each record is delivered once, outage or not.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=5,
            enable_idempotence=True,
            request_timeout_ms=120_000,
        )
        await producer.start()
        try:
            for n in range(count):
                key = f"k{n % KEYS:02d}".encode()
                await producer.send(f"{self.prefix}in", b"x", key=key)
                self.sent[key] += 1
                if per_second is not None and n % 50 == 49:
                    await asyncio.sleep(50 / per_second)
            await producer.flush()
        finally:
            await producer.stop()

    def start(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        """An engine process with a data directory of its own (its store starts empty)."""
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.engine_app",
                self.bootstrap,
                self.app_id,
                self.prefix,
                str(self.tmp_path / f"{name}-data"),
                *options,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.processes.append(process)
        return process

    async def outputs(self, at_least: int, timeout: float = WAIT_SECONDS) -> list[bytes]:
        """Every committed output record, read once from the start, until there are
        `at_least` of them and nothing more arrives for a moment."""
        consumer = AIOKafkaConsumer(
            f"{self.prefix}out",
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                got = await consumer.getmany(timeout_ms=300)
                batch = [r.value for records in got.values() for r in records if r.value]
                if batch:
                    values.extend(batch)
                    quiet_since = time.monotonic()
                elif len(values) >= at_least and time.monotonic() - quiet_since > 2.0:
                    return values
            raise AssertionError(
                f"{len(values)} outputs after {timeout:.0f} s, expected {at_least}; "
                f"logs in {self.tmp_path}"
            )
        finally:
            await consumer.stop()

    def check_exactly_once(self, values: list[bytes]) -> None:
        """Each input emitted once, and each key's counts 1..n, each once (state applied once)."""
        places = Counter()
        counts: dict[bytes, list[int]] = {}
        for value in values:
            key, count, partition, offset = value.split(b":")
            places[(int(partition), int(offset))] += 1
            counts.setdefault(key, []).append(int(count))
        twice = [place for place, seen in places.items() if seen > 1]
        assert twice == [], f"inputs emitted more than once: {twice[:10]}"
        assert sum(places.values()) == sum(self.sent.values())
        for key, sent in self.sent.items():
            assert sorted(counts[key]) == list(range(1, sent + 1)), key

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
async def run(kafka_bootstrap: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    created = Run(kafka_bootstrap, tmp_path)
    await created.create_topics()
    yield created
    created.stop_all()


async def test_a_worker_killed_mid_stream_leaves_every_effect_committed_once(run: Run) -> None:
    """Given 30,000 records and a worker SIGKILLed after part of them, when a second worker
    with an empty store takes over (restoring the counts from the changelog), then every
    input's output is committed once and every key's counts run 1..n without a gap or a
    repeat; and the same holds for records sent after the takeover."""
    await run.produce(30_000)
    first = run.start("first")
    await run.outputs(at_least=3_000)
    first.kill()
    first.wait()

    run.start("second")
    run.check_exactly_once(await run.outputs(at_least=30_000))
    await run.produce(1_000)
    run.check_exactly_once(await run.outputs(at_least=31_000))


async def test_a_frozen_owner_is_fenced_and_commits_nothing(run: Run) -> None:
    """Given a worker frozen (SIGSTOP) mid-stream past its session timeout, holding records it
    processed but had not committed, while records keep coming and a second worker takes its
    partitions over, when the first resumes, then its commit is refused (fenced) and every
    input's output is committed once."""
    first = run.start("first", "3")
    sending = asyncio.create_task(run.produce(12_000, per_second=1_500))
    await run.outputs(at_least=1_500)
    os.kill(first.pid, signal.SIGSTOP)
    run.start("second")
    await asyncio.sleep(10)  # past the first's session timeout: the second owns everything
    os.kill(first.pid, signal.SIGCONT)
    await sending

    run.check_exactly_once(await run.outputs(at_least=12_000))
    log = (run.tmp_path / "first.log").read_text()
    assert "partition taken over by another worker; its batch is aborted" in log


@pytest.fixture
def own_broker() -> Iterator[LocalKafka]:
    """A broker of this test's own, since it is stopped and started again."""
    with LocalKafka(assemble(load_settings().cache_dir)) as kafka:
        yield kafka


async def test_a_worker_rides_out_a_broker_restart(own_broker: LocalKafka, tmp_path: Path) -> None:
    """Given records arriving steadily, when the broker stops for 15 s and starts again on the
    same data and address (a rolling restart), then the worker never exits, and every input's
    output is committed once. The worker's commits time out after 15 s (engine_app.py), so
    some fail during the outage, some of them after the broker committed them."""
    run = Run(own_broker.bootstrap_servers, tmp_path)
    await run.create_topics()
    worker = run.start("worker")
    try:
        sending = asyncio.create_task(run.produce(6_000, per_second=300))
        await asyncio.sleep(5)

        await asyncio.to_thread(own_broker.halt)
        await asyncio.sleep(15)
        assert worker.poll() is None, "the worker exited while the broker was away"
        await asyncio.to_thread(own_broker.start)
        await asyncio.wait_for(sending, timeout=180)

        run.check_exactly_once(await run.outputs(at_least=6_000, timeout=180))
        assert worker.poll() is None, "the worker exited"
    finally:
        run.stop_all()


class FailingOnce(CountingStage):
    """The counting stage, raising (as a stage bug would) the first time it meets b"boom"."""

    failed = False

    def process(
        self, partition: int, records: Mapping[str, list[ConsumerRecord]], store: PartitionStore
    ) -> list[Outgoing]:
        for record in records.get(self.inputs[0], []):
            if record.value == b"boom" and not FailingOnce.failed:
                # Part of the batch is staged already, as a real stage would leave it.
                store.put(b"k00", b"999")
                FailingOnce.failed = True
                raise RuntimeError("a stage bug")
        return super().process(partition, records, store)


async def test_a_stage_that_fails_leaves_nothing_of_its_partitions_uncommitted_work(
    run: Run, tmp_path: Path
) -> None:
    """Given batches processed but not yet committed, and a stage that raises on a later
    record, when the engine stops on that error (committing the other partitions' work on its
    way out) and another engine takes over, then every input's output is committed once and
    every count runs 1..n: nothing of the failed partition's uncommitted batches was kept."""
    await run.produce(2_000)
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(f"{run.prefix}in", b"boom", key=b"k00")
        run.sent[b"k00"] += 1
    finally:
        await producer.stop()
    failing = BatchEngine(
        run.bootstrap,
        run.app_id,
        FailingOnce(run.prefix),
        tmp_path / "failing",
        max_records=50,
        commit_interval=60,
        commit_when_caught_up=False,
    )
    with pytest.raises(RuntimeError, match="a stage bug"):
        await asyncio.wait_for(failing.run(), timeout=WAIT_SECONDS)

    run.start("next")
    run.check_exactly_once(await run.outputs(at_least=2_001))
