"""The shard that owns a workspace must be the broker clients' default partition for the key:
publishers, the aggregate agent's re-routing and the HTTP views all ask topics.shards."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from tools.workload import workspace_ids
from topics import shards as shards_module
from topics.shards import Shards, shard_of

PARTITION_COUNTS = [1, 2, 3, 7, 8, 12, 64, 1000, 1024]

# Computed with Apache Kafka's Java client 4.1.1:
# BuiltInPartitioner.partitionForKey(id.getBytes(UTF_8), n) for n in (1, 3, 8, 12, 64, 1024).
JAVA_PARTITIONS = {
    "ws-000000": (0, 1, 6, 10, 54, 374),
    "ws-000001": (0, 0, 7, 3, 55, 887),
    "ws-000042": (0, 1, 0, 4, 48, 304),
    "ws-123456": (0, 0, 1, 9, 41, 1001),
    "acme": (0, 0, 4, 0, 4, 260),
    "0": (0, 2, 4, 8, 4, 964),
    "1": (0, 0, 7, 3, 15, 911),
    "128": (0, 2, 1, 5, 49, 753),
    "2187": (0, 2, 5, 5, 29, 93),
    "Z9_z-9": (0, 0, 5, 9, 13, 77),
}


def ids_to_check() -> list[str]:
    """Platform-shaped ids plus ids of lengths 1 to 64 (murmur2 treats each length mod 4
    differently) drawn from the whole workspace-id alphabet."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    varied = []
    for start in range(62):
        rotated = alphabet[start:] + alphabet[:start]
        varied += [rotated[:length] for length in (1, 2, 3, 4, 5, 17, 64)]
    return workspace_ids(2000) + varied


@pytest.mark.parametrize("partitions", PARTITION_COUNTS)
def test_shard_of_equals_aiokafkas_default_partitioner(partitions: int) -> None:
    """Given many workspace ids, then shard_of picks the partition aiokafka's default
    partitioner would pick for that key, so a workspace's records share a shard."""
    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))

    mismatches = [
        workspace_id
        for workspace_id in ids_to_check()
        if shard_of(workspace_id, partitions)
        != partitioner(workspace_id.encode(), all_partitions, all_partitions)
    ]

    assert mismatches == []


@pytest.mark.parametrize(("workspace_id", "expected"), list(JAVA_PARTITIONS.items()))
def test_shard_of_equals_the_java_clients_partition(
    workspace_id: str, expected: tuple[int, ...]
) -> None:
    """Given ids with partitions computed by Kafka's Java client, then shard_of agrees, so
    Java producers and this client place a workspace on the same shard."""
    counts = (1, 3, 8, 12, 64, 1024)

    assert tuple(shard_of(workspace_id, n) for n in counts) == expected


def test_shards_are_spread_over_all_partitions() -> None:
    """Given 2000 workspaces and 8 shards, then every shard gets a fair share."""
    shards = [shard_of(workspace_id, 8) for workspace_id in workspace_ids(2000)]

    per_shard = [shards.count(n) for n in range(8)]
    assert min(per_shard) > 2000 / 8 * 0.8
    assert max(per_shard) < 2000 / 8 * 1.2


@pytest.mark.parametrize("partitions", [1, 3, 8, 1024])
def test_the_memoised_owner_is_shard_of(partitions: int) -> None:
    """Given a Shards memo, then its owner of every workspace, asked once or again, equals
    shard_of: the memo changes the cost, never the answer."""
    shards = Shards(partitions)
    ids = ids_to_check()

    first = [shards.owner(workspace_id) for workspace_id in ids]
    again = [shards.owner(workspace_id) for workspace_id in reversed(ids)]

    expected = [shard_of(workspace_id, partitions) for workspace_id in ids]
    assert first == expected
    assert again == list(reversed(expected))


def test_the_memo_stays_bounded_and_correct_past_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a memo limit of 5 workspaces, when 40 workspaces are asked for twice, then
    every answer still equals shard_of and the memo never holds more than 5."""
    monkeypatch.setattr(shards_module, "MAX_REMEMBERED", 5)
    shards = Shards(12)
    ids = workspace_ids(40)
    sizes = []

    answers = []
    for workspace_id in ids + ids:
        answers.append(shards.owner(workspace_id))
        sizes.append(len(shards._owner))

    assert answers == [shard_of(workspace_id, 12) for workspace_id in ids + ids]
    assert max(sizes) == 5


@given(st.binary(max_size=200))
def test_murmur2_equals_aiokafkas_for_any_bytes(key: bytes) -> None:
    """Given any key, the contracts' own murmur2 hashes it as aiokafka's does."""
    assert shards_module.murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF
