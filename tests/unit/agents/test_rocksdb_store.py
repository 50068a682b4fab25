"""The tables' store closes its RocksDB databases itself, and a worker stops its tables last."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP
from rocksdict import Options, Rdict

from agents.faust_app import AutopilotApp, ClosingTable
from agents.rocksdb_store import ClosingStore, StoreClosedError


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Any]:
    app = AutopilotApp("unit-store", datadir=str(tmp_path), store="rocksdb://", Table=ClosingTable)
    yield app.Table("things", partitions=2, key_type=str, value_type=bytes)


def reopened(store: ClosingStore, partition: int) -> Rdict:
    """The partition's database opened anew, as the worker that takes the partition over does."""
    return Rdict(str(store.partition_path(partition)), options=Options(raw_mode=True))


def test_a_revoked_partition_is_closed_even_while_something_still_holds_it(table: Any) -> None:
    # Given a partition's database with a value, still referenced outside the store
    store = table.data
    held = store._db_for_partition(0)
    held.put(b"ws-1", b"state")
    # When the partition is revoked
    store.revoke_partitions(table, {TP(table.changelog_topic.get_topic_name(), 0)})
    # Then its database is closed (Faust's store leaves it to the garbage collector, and the
    # RocksDB lock stays held while anything refers to it), and it opens again with its value
    db = reopened(store, 0)
    assert db.get(b"ws-1") == b"state"
    db.close()


async def test_a_stopped_store_opens_nothing_again(table: Any) -> None:
    # Given a store with a value in a partition
    store = table.data
    store._db_for_partition(1).put(b"ws-2", b"state")
    topic = table.changelog_topic.get_topic_name()
    # When it stops
    await store.stop()
    # Then a late acknowledgement of a changelog write is dropped, a read or write is refused
    # (Faust's store would open the database again, and nothing would close it), and the
    # database opens elsewhere with its value
    store.set_persisted_offset(TP(topic, 1), 7)
    with pytest.raises(StoreClosedError):
        store._db_for_partition(1)
    db = reopened(store, 1)
    assert db.get(b"ws-2") == b"state"
    db.close()


async def test_a_worker_closes_its_tables_after_everything_that_uses_them(tmp_path: Path) -> None:
    # Given an app whose stop steps are recorded
    app = AutopilotApp("unit-stop", datadir=str(tmp_path), store="rocksdb://")
    steps: list[str] = []

    def step(name: str) -> Any:
        async def record(*_: Any, **__: Any) -> None:
            steps.append(name)

        return record

    app.agents.stop = step("agents")  # type: ignore[method-assign]
    app._stop_futures = step("timers")  # type: ignore[method-assign]
    app.on_before_shutdown.connect(step("executor"))
    app._producer_flush = step("producer flush")  # type: ignore[method-assign]
    app._stop_consumer = step("tables")  # type: ignore[method-assign]
    app._maybe_close_http_client = step("http")  # type: ignore[method-assign]
    # When it stops
    await app.on_stop()
    # Then the agents, the timers and the executor end, and every changelog write is
    # acknowledged, before the tables' stores close (Faust's order is the other way round)
    assert steps == ["agents", "timers", "executor", "producer flush", "tables", "http"]
