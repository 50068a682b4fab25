"""One input partition's state: RocksDB on local disk, a compacted changelog topic in Kafka.

A batch reads values and stages its changes; the changes go to the changelog inside the
batch's transaction, and reach RocksDB only after that transaction committed (`apply`). An
aborted batch leaves the store as it was (`discard`). So the local store never holds a value
the changelog does not, and a partition's next owner, restoring from the changelog with
`read_committed`, gets exactly the committed state.

The store also keeps the changelog offset it holds everything up to, so a worker that owned the
partition before restores only what was committed since.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

from engine.transactions import Outgoing

# The store's own bookkeeping, beside the values (no stage key starts with NUL).
_CHECKPOINT = b"\x00changelog-offset"


class PartitionStore:
    """The state of one input partition, with changes staged until their transaction commits."""

    def __init__(self, path: Path, changelog: str, partition: int) -> None:
        self.path = path
        self.changelog = changelog
        self.partition = partition
        path.parent.mkdir(parents=True, exist_ok=True)
        # Raw: keys and values are bytes already, stored as they are (no type tags).
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options)
        self._staged: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        """The value as of the batch so far: staged, else stored."""
        if key in self._staged:
            return self._staged[key]
        return self.stored(key)

    def stored(self, key: bytes) -> bytes | None:
        """The committed value (staged changes not included), for readers outside a batch."""
        value = self._db.get(key)
        return value if isinstance(value, bytes) else None

    def put(self, key: bytes, value: bytes) -> None:
        """Stage a new value for the batch's transaction."""
        self._staged[key] = value

    def delete(self, key: bytes) -> None:
        """Stage a removal (a tombstone on the changelog)."""
        self._staged[key] = None

    def changelog_records(self) -> list[Outgoing]:
        """The staged changes as changelog records: the last value of each key."""
        return [
            Outgoing(self.changelog, self.partition, key, value)
            for key, value in self._staged.items()
        ]

    def apply(self, checkpoint: int | None) -> None:
        """The batch's transaction committed: write its changes (and the changelog offset they
        reach, when known) to RocksDB, all at once."""
        batch = WriteBatch(raw_mode=True)
        for key, value in self._staged.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if checkpoint is not None:
            batch.put(_CHECKPOINT, str(checkpoint).encode())
        self._db.write(batch)
        self._staged.clear()

    def discard(self) -> None:
        """The batch's transaction aborted: forget its changes."""
        self._staged.clear()

    @property
    def checkpoint(self) -> int | None:
        """The changelog offset the store holds everything up to (None: nothing restored)."""
        raw = self._db.get(_CHECKPOINT)
        return int(raw) if isinstance(raw, bytes) else None

    def restore(self, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> int:
        """Write committed changelog records (offset, key, value) in offset order; returns how
        many were written. One write to RocksDB with the offset they reach: a write per key
        took most of a restore's time."""
        batch = WriteBatch(raw_mode=True)
        written = 0
        last = None
        for offset, key, value in records:
            last = offset
            if key is None:
                continue
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
            written += 1
        if last is not None:
            batch.put(_CHECKPOINT, str(last).encode())
            self._db.write(batch)
        return written

    def scan(self, start: bytes, end: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The values of the keys from `start` up to, not including, `end`, in key order, as of
        the batch so far (changes staged before the scan began included). Streamed: a sweep
        reads a whole shard's workspaces one at a time."""
        staged = sorted((k, v) for k, v in self._staged.items() if start <= k < end)
        ahead = 0
        for key, value in self._db.items(from_key=start):
            if not isinstance(key, bytes) or key >= end:
                break
            while ahead < len(staged) and staged[ahead][0] <= key:
                staged_key, staged_value = staged[ahead]
                ahead += 1
                if staged_value is not None:
                    yield staged_key, staged_value
                if staged_key == key:
                    break
            else:
                if isinstance(value, bytes):
                    yield key, value
        for staged_key, staged_value in staged[ahead:]:
            if staged_value is not None:
                yield staged_key, staged_value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored key and value (not the staged ones), for tests and tools."""
        for key, value in self._db.items():
            if isinstance(key, bytes) and isinstance(value, bytes) and key != _CHECKPOINT:
                yield key, value

    def close(self) -> None:
        """Close the database; staged changes are dropped."""
        self._staged.clear()
        self._db.close()
