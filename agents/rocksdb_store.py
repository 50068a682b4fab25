"""The tables' RocksDB store: Faust's, with each database closed explicitly, and none opened once
the store has stopped.

Faust's store (faust/stores/rocksdb.py, 0.15.3) never closes a database: on a revoke and on stop
it drops its references and runs the garbage collector, and any later read or write opens the
partition's database again. A worker's stop used its stores after closing them (the producer's
last changelog acknowledgements write their offsets, commands still running read and write their
memory), so each stop reopened databases that nothing closed, and left them to the interpreter's
teardown with RocksDB's background work still running.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.stores import rocksdb
from faust.types import TP, CollectionT

from topics.errors import AutopilotError


class StoreClosedError(AutopilotError):
    """A table was used after its store was closed: work outlived the worker's stop."""


class ClosingStore(rocksdb.Store):
    """Faust's RocksDB store; a database is closed when its partition leaves or the store stops."""

    _closed = False

    async def stop(self) -> None:
        """Close every partition's database; the store opens none again."""
        self._closed = True
        # An assignment under way checks this before each partition it opens.
        self.rebalance_ack = False
        self._close(list(self._dbs))
        self._key_index.clear()

    def revoke_partitions(self, table: CollectionT, tps: set[TP]) -> None:
        """Close the databases of the partitions that left this worker."""
        self._close(tp.partition for tp in tps if tp.topic in table.changelog_topic.topics)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Store the offset of the last changelog write the broker acknowledged."""
        if self._closed:
            # Acknowledged after the stop: the write is on the broker, and recovery reads the
            # changelog from the offset stored before it, so it is restored all the same.
            return
        super().set_persisted_offset(tp, offset)

    async def _try_open_db_for_partition(
        self,
        partition: int,
        max_retries: int = 30,
        retry_delay: float = 1.0,
        generation_id: int = 0,
    ) -> Any:
        # Faust's, minus its `await self.stop()` before giving up, and opening nothing once the
        # store stopped (an assignment still under way when the worker stops).
        for attempt in range(max_retries):
            if self._closed:
                return None
            try:
                return self._db_for_partition(partition)
            except Exception as exc:  # rocksdict raises Exception; "lock": another holds it
                if "lock" not in repr(exc) or attempt == max_retries - 1:
                    raise
            if generation_id != self.app.consumer_generation_id:
                return None
            self.log.info("DB for partition %r is locked! Retry in 1s...", partition)
            await self.sleep(retry_delay)
        return None

    def _db_for_partition(self, partition: int) -> Any:
        if self._closed:
            raise StoreClosedError(
                f"table {self.table.name} was used after its store closed (partition {partition}):"
                " work still ran when the worker stopped; report it with the worker's log"
            )
        return super()._db_for_partition(partition)

    def _close(self, partitions: Iterable[int]) -> None:
        for partition in sorted(partitions):
            db = self._dbs.pop(partition, None)
            if db is not None:
                self.log.info("closing %s partition %s", self.table.name, partition)
                # Flushes the memtable and the WAL, waits for background work, frees the LOCK;
                # an iterator still open keeps RocksDB alive until it is dropped.
                db.close()
