"""Which partition (workspace shard) owns a workspace: the one place that answers it."""

from __future__ import annotations

# Enough for every workspace of a large platform; past it the memo starts again (bounded memory).
MAX_REMEMBERED = 500_000


_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a key (as its Java client and aiokafka compute it), written here
    so that the contracts need no Kafka client."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def shard_of(workspace_id: str, partitions: int) -> int:
    """The partition that owns a workspace: murmur2 as Java's and aiokafka's default partitioner."""
    return int(murmur2(workspace_id.encode()) & 0x7FFFFFFF) % partitions


class Shards:
    """shard_of with a memo: murmur2 is pure Python (~10 µs a call)."""

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
