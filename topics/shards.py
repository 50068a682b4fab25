"""Which partition (workspace shard) owns a workspace: the one place that answers it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2

# Enough for every workspace of a large platform; past it the memo starts again (bounded memory).
MAX_REMEMBERED = 500_000


def shard_of(workspace_id: str, partitions: int) -> int:
    """The partition that owns a workspace: murmur2 as Java's and aiokafka's default partitioner."""
    return int(murmur2(workspace_id.encode()) & 0x7FFFFFFF) % partitions


class Shards:
    """shard_of with a memo: murmur2 is pure Python in aiokafka (~10 µs a call)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._owner: dict[str, int] = {}

    def owner(self, workspace_id: str) -> int:
        """The workspace's shard."""
        shard = self._owner.get(workspace_id)
        if shard is None:
            if len(self._owner) >= MAX_REMEMBERED:
                self._owner.clear()
            shard = self._owner[workspace_id] = shard_of(workspace_id, self.partitions)
        return shard
