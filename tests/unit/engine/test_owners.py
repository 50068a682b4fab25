"""The advertised range assignor: range assignment, and every member told each partition's owner.

The leader's `assign` runs on the group's member metadata as the coordinator hands it over; each
member's `on_assignment` then reads its own assignment. Both are exercised here as aiokafka's
group coordinator calls them, member metadata and assignments round-tripped through their wire
encoding.
"""

from __future__ import annotations

from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from engine.owners import AdvertisedRangeAssignor

TOPICS = ("signals", "control")


class Cluster:
    """The one thing an assignor asks of the cluster's metadata: a topic's partitions."""

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(8))


def rebalance(addresses: list[str]) -> list[AdvertisedRangeAssignor]:
    """One rebalance of members at these addresses (member ids sort as listed): the first
    leads, every member gets its assignment."""
    members = [AdvertisedRangeAssignor(address) for address in addresses]
    metadata = {
        f"m{n}": ConsumerProtocolMemberMetadata.decode(member.metadata(TOPICS).encode())
        for n, member in enumerate(members)
    }
    assigned = members[0].assign(Cluster(), metadata)  # type: ignore[arg-type]
    for n, member in enumerate(members):
        member.on_assignment(ConsumerProtocolMemberAssignment.decode(assigned[f"m{n}"].encode()))
    return members


def test_partition_p_of_every_input_goes_to_one_member_as_with_range() -> None:
    """Given two members over two 8-partition inputs, then each owns the same partitions of
    both (the first half, the second half), as the range assignor gives them."""
    members = [AdvertisedRangeAssignor(a) for a in ("http://a:1", "http://b:2")]
    metadata = {
        f"m{n}": ConsumerProtocolMemberMetadata.decode(member.metadata(TOPICS).encode())
        for n, member in enumerate(members)
    }

    assigned = members[0].assign(Cluster(), metadata)  # type: ignore[arg-type]

    assert dict(assigned["m0"].assignment) == {"control": [0, 1, 2, 3], "signals": [0, 1, 2, 3]}
    assert dict(assigned["m1"].assignment) == {"control": [4, 5, 6, 7], "signals": [4, 5, 6, 7]}


def test_every_member_learns_the_owner_of_every_partition() -> None:
    """Given three members, then each (not only the leader) names the same owner for every
    partition: the address of the member that was given it."""
    members = rebalance(["http://a:1", "http://b:2", "http://c:3"])

    owners = [[member.owner(p) for p in range(8)] for member in members]

    expected = ["http://a:1"] * 3 + ["http://b:2"] * 3 + ["http://c:3"] * 2
    assert owners == [expected] * 3


def test_a_member_knows_no_owner_before_its_first_assignment() -> None:
    """Given a member that never joined, then it names no owner (a view answers 503 then)."""
    assert AdvertisedRangeAssignor("http://a:1").owner(0) is None


def test_an_assignment_without_the_map_leaves_no_stale_owners() -> None:
    """Given a member that knew the owners, when an assignment arrives without a map (a
    leader of another version), then it names no owner rather than the old ones."""
    [member] = rebalance(["http://a:1"])
    assert member.owner(3) == "http://a:1"

    member.on_assignment(ConsumerProtocolMemberAssignment(0, [("signals", [0])], b""))

    assert member.owner(3) is None
