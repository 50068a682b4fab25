"""Who owns each partition of an engine's group: range assignment, with each member's address.

A worker answers HTTP for the shards it owns and forwards the rest to their owner, so every
member must know every partition's owner. Each member advertises its address in its group
metadata; the group's leader assigns partitions as the range assignor does (partition p of
every input to the same member) and hands the whole map to every member with its assignment.
The map is as current as the group's last rebalance, like Kafka Streams' host info.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


class AdvertisedRangeAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """The range assignor, telling every member which address owns each partition."""

    # Every member of a group must name the same protocol; this one differs from plain range.
    name = "range-advertised"
    version = 0

    def __init__(self, address: str) -> None:
        self.address = address
        self._owners: dict[int, str] = {}

    def owner(self, partition: int) -> str | None:
        """The address of the member that owns the partition, as of the last rebalance."""
        return self._owners.get(partition)

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, list(topics), self.address.encode())

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        assigned = RangePartitionAssignor.assign(cluster, members)
        owners: dict[str, str] = {}
        for member_id, assignment in assigned.items():
            address = (members[member_id].user_data or b"").decode(errors="replace")
            for _topic, partitions in assignment.assignment:
                for partition in partitions:
                    owners[str(partition)] = address
        shared = orjson.dumps(owners)
        return {
            member_id: ConsumerProtocolMemberAssignment(self.version, assignment.assignment, shared)
            for member_id, assignment in assigned.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        try:
            owners = orjson.loads(assignment.user_data or b"{}")
        except orjson.JSONDecodeError:
            owners = {}
        self._owners = {int(p): str(address) for p, address in owners.items()}
