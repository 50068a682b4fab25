"""A real Apache Kafka without Docker: LocalKafka runs it, provide_bootstrap chooses it."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tools.broker import docker_engine_answers, kafka_container_env, provide_bootstrap
from tools.local_kafka import (
    KAFKA_VERSION,
    SHARED_BROKER_SETTINGS,
    LocalKafka,
    assemble,
    broker_answers,
)
from topics.errors import BrokerUnavailableError

pytestmark = pytest.mark.integration

CACHE_DIR = Path.home() / ".cache" / "autopilot"
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
WAIT_S = 30.0


@pytest.fixture(scope="module")
def libs() -> Path:
    return assemble(CACHE_DIR)


@pytest.fixture(scope="module")
def kafka(libs: Path) -> Iterator[LocalKafka]:
    with LocalKafka(libs) as broker:
        yield broker


def fresh_name(purpose: str) -> str:
    return f"test-local-kafka-{purpose}-{uuid.uuid4().hex[:8]}"


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    async with asyncio.timeout(WAIT_S):
        await admin.start()
        try:
            topic = NewTopic(name, num_partitions=partitions, replication_factor=1)
            await admin.create_topics([topic])
        finally:
            await admin.close()


async def read_values_until(consumer: AIOKafkaConsumer, last: str) -> list[str]:
    values: list[str] = []
    async with asyncio.timeout(WAIT_S):
        async for record in consumer:
            values.append(record.value.decode())
            if values[-1] == last:
                return values
    raise AssertionError("consumer stopped before the last value")


def test_assemble_is_idempotent_and_warm_calls_are_instant(libs: Path) -> None:
    # Given the jars were assembled once (the fixture)
    # When assembling again
    started = time.monotonic()
    again = assemble(CACHE_DIR)
    # Then nothing is fetched and the classpath holds Kafka and the log4j2 binding
    assert again == libs
    assert time.monotonic() - started < 1.0
    jars = {jar.name for jar in libs.glob("*.jar")}
    assert f"kafka_2.13-{KAFKA_VERSION}.jar" in jars
    assert any(name.startswith("log4j-slf4j-impl-") for name in jars)


async def test_broker_answers_metadata_with_one_live_broker(kafka: LocalKafka) -> None:
    assert broker_answers(kafka.bootstrap_servers)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    async with asyncio.timeout(WAIT_S):
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
    port = int(kafka.bootstrap_servers.rpartition(":")[2])
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [("127.0.0.1", port)]


async def test_records_round_trip_through_three_partitions(kafka: LocalKafka) -> None:
    # Given a fresh topic with three partitions
    topic = fresh_name("round-trip")
    await create_topic(kafka.bootstrap_servers, topic, partitions=3)
    sent = {(i % 3, f"key-{i}", f"value-{i}") for i in range(30)}
    # When records are produced to every partition
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    async with asyncio.timeout(WAIT_S):
        await producer.start()
        try:
            for partition, key, value in sorted(sent):
                await producer.send_and_wait(
                    topic, value.encode(), key=key.encode(), partition=partition
                )
        finally:
            await producer.stop()
    # Then a consumer group reads back exactly those records, in their partitions
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=fresh_name("group"),
        auto_offset_reset="earliest",
    )
    received: set[tuple[int, str, str]] = set()
    async with asyncio.timeout(WAIT_S):
        await consumer.start()
        try:
            assert consumer.partitions_for_topic(topic) == {0, 1, 2}
            async for record in consumer:
                received.add((record.partition, record.key.decode(), record.value.decode()))
                if len(received) == len(sent):
                    break
        finally:
            await consumer.stop()
    assert received == sent


async def test_read_committed_consumer_skips_aborted_transactions(kafka: LocalKafka) -> None:
    # Given a transactional producer on the single node
    topic = fresh_name("transactions")
    await create_topic(kafka.bootstrap_servers, topic, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, transactional_id=fresh_name("txn")
    )
    # When one transaction commits, one aborts, and a last one commits
    async with asyncio.timeout(WAIT_S):
        await producer.start()
        try:
            for values, commit in (
                (["committed-1", "committed-2"], True),
                (["aborted-1", "aborted-2"], False),
                (["committed-3"], True),
            ):
                await producer.begin_transaction()
                for value in values:
                    await producer.send_and_wait(topic, value.encode())
                if commit:
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
        finally:
            await producer.stop()

    async def read(isolation_level: str) -> list[str]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers, isolation_level=isolation_level
        )
        async with asyncio.timeout(WAIT_S):
            await consumer.start()
            try:
                consumer.assign([TopicPartition(topic, 0)])
                await consumer.seek_to_beginning()
                return await read_values_until(consumer, "committed-3")
            finally:
                await consumer.stop()

    # Then read_committed sees only committed records, while read_uncommitted (proving the
    # aborted records were really written) sees them all
    assert await read("read_committed") == ["committed-1", "committed-2", "committed-3"]
    assert await read("read_uncommitted") == [
        "committed-1",
        "committed-2",
        "aborted-1",
        "aborted-2",
        "committed-3",
    ]


async def test_stop_ends_the_jvm_and_removes_the_data_dir(libs: Path) -> None:
    # Given a broker started from inside a running event loop (as an async fixture would)
    kafka = LocalKafka(libs).start()
    pid, data_dir, bootstrap = kafka.pid, kafka.data_dir, kafka.bootstrap_servers
    assert pid is not None and data_dir is not None
    os.kill(pid, 0)  # alive
    assert (data_dir / "server.properties").is_file()
    # When it is stopped, twice
    kafka.stop()
    kafka.stop()
    # Then the JVM is gone, its data too, and nothing answers at its address
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not data_dir.exists()
    assert not broker_answers(bootstrap, timeout=2.0)
    with pytest.raises(BrokerUnavailableError):
        _ = kafka.bootstrap_servers


def test_a_broker_that_cannot_start_reports_why_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its own temp root, so brokers started elsewhere meanwhile cannot confuse the check.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kafka = LocalKafka(tmp_path / "no-jars-here")
    with pytest.raises(BrokerUnavailableError, match="formatting Kafka storage failed"):
        kafka.start()
    assert not kafka.is_running()
    assert list(tmp_path.glob("autopilot-kafka-*")) == []


def test_a_broker_slower_than_the_timeout_is_stopped_with_its_log(libs: Path) -> None:
    kafka = LocalKafka(libs, startup_timeout=0.5)
    with pytest.raises(BrokerUnavailableError, match=r"did not answer within .*its log ends with"):
        kafka.start()
    assert not kafka.is_running()
    assert kafka.data_dir is None


def test_provide_bootstrap_yields_the_configured_broker_without_starting_one(
    tmp_path: Path,
) -> None:
    cache_dir = tmp_path / "cache"
    started = time.monotonic()
    with provide_bootstrap("127.0.0.1:1", cache_dir) as bootstrap:
        assert bootstrap == "127.0.0.1:1"
    # Neither Docker was asked nor Kafka assembled: instant, and the cache stays untouched.
    assert time.monotonic() - started < 0.5
    assert not cache_dir.exists()


def test_provide_bootstrap_without_configuration_starts_and_stops_a_broker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expected_source = "testcontainers" if docker_engine_answers() else "local_kafka"
    with (
        caplog.at_level(logging.INFO, logger="tools.broker"),
        provide_bootstrap(None, CACHE_DIR) as bootstrap,
    ):
        assert broker_answers(bootstrap)
    chosen = [vars(r)["source"] for r in caplog.records if r.msg == "kafka broker chosen"]
    assert chosen == [expected_source]
    assert not broker_answers(bootstrap, timeout=2.0)


def test_docker_compose_mirrors_the_shared_broker_settings() -> None:
    environment = dict(
        re.findall(r'^\s+(KAFKA_[A-Z_]+):\s*"([^"]*)"\s*$', COMPOSE_FILE.read_text(), re.M)
    )
    expected = kafka_container_env(SHARED_BROKER_SETTINGS)
    assert {name: environment.get(name) for name in expected} == expected
