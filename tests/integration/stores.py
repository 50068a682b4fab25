"""A stopped worker's state stores, read back (Faust's table stores and the engine's partition
stores): each must open and hold only what its changelog holds (a store ahead of its changelog
was written after the producer stopped, or before its transaction committed)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from projections.ledger_reader import read_partitions_to_end
from tests.integration.conftest import WAIT_SECONDS

# Where Faust's RocksDB store keeps the last changelog offset it wrote (faust/stores/rocksdb.py).
FAUST_OFFSET_KEY = b"__faust\x00offset__"
# Where the engine's partition store does (engine/partition_store.py).
ENGINE_OFFSET_KEY = b"\x00changelog-offset"

History = dict[int, dict[bytes, set[bytes]]]


async def changelog_history(
    bootstrap: str, topic: str, partitions: int
) -> tuple[History, dict[int, int]]:
    """Every value each key had on the changelog, per partition, and the partitions' ends."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, partition) for partition in range(partitions)]
        ends = await consumer.end_offsets(tps)
        read = await read_partitions_to_end(consumer, tps, timeout=WAIT_SECONDS)
    finally:
        await consumer.stop()
    history: History = {partition: defaultdict(set) for partition in range(partitions)}
    for tp, records in read.items():
        for record in records:
            if record.key is not None and record.value is not None:
                history[tp.partition][record.key].add(record.value)
    return history, {tp.partition: ends[tp] for tp in tps}


def faust_stores(data_dirs: list[Path], table: str) -> list[tuple[int, Path]]:
    """Each of a Faust table's partition stores in the data dirs, with its partition."""
    return [
        (int(path.name.removeprefix(f"{table}-").removesuffix(".db")), path)
        for data_dir in data_dirs
        for path in sorted((data_dir / "v1" / "tables").glob(f"{table}-*.db"))
    ]


def engine_stores(data_dirs: list[Path], stage: str) -> list[tuple[int, Path]]:
    """Each of an engine stage's partition stores in the data dirs, with its partition."""
    return [
        (int(path.name), path)
        for data_dir in data_dirs
        for path in sorted((data_dir / stage).glob("[0-9]*"))
    ]


async def store_problems(
    bootstrap: str,
    changelog: str,
    stores: list[tuple[int, Path]],
    offset_key: bytes,
    partitions: int,
) -> tuple[list[str], int]:
    """What is wrong with the partition stores, and how many values were checked: a store
    that does not open (a RocksDB lock still held, a corrupt WAL), a persisted offset past the
    changelog's end, a value its changelog never had."""
    history, ends = await changelog_history(bootstrap, changelog, partitions)
    problems: list[str] = []
    checked = 0
    for partition, path in stores:
        try:
            # Read-write, as a worker opens it: takes its lock and replays its WAL.
            db = Rdict(
                str(path), options=Options(raw_mode=True), access_type=AccessType.read_write()
            )
        except Exception as exc:  # rocksdict raises Exception
            problems.append(f"{path}: does not open: {exc}")
            continue
        try:
            stored = db.get(offset_key)
            if stored is not None and int(stored) >= ends[partition]:
                problems.append(f"{path}: offset {int(stored)} past the end {ends[partition]}")
            for key, value in db.items():  # raw mode: bytes
                if key == offset_key:
                    continue
                checked += 1
                if value not in history[partition].get(cast(bytes, key), ()):
                    problems.append(f"{path}: {key!r} holds a value its changelog never had")
        finally:
            db.close()
    return problems, checked
