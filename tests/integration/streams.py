"""Signals for integration tests: built by hand, published with Autopilot's own client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from app.client import SignalPublisher
from app.settings import Settings
from topics.shards import Shards
from topics.signals import Signal, SignalType, signal_from

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
T0S = int(T0.timestamp())


def signal(
    n: str, workspace: str, kind: SignalType, minute: float = 0, **attributes: Any
) -> Signal:
    """Signal `n` of a workspace, `minute` minutes after T0."""
    return signal_from(
        {
            "id": n,
            "workspace_id": workspace,
            "type": kind,
            "occurred_at": T0 + timedelta(minutes=minute),
            "source": "test",
            "attributes": attributes,
        }
    )


async def publish(settings: Settings, signals: list[Signal]) -> None:
    """Publish with the client (one record per shard batch) and wait for the broker."""
    assert settings.kafka_bootstrap_servers
    async with SignalPublisher(settings.kafka_bootstrap_servers, settings.topic("signals")) as pub:
        await pub.publish_many(signals)


def workspaces_of_shard(shard: int, count: int, partitions: int = 4) -> list[str]:
    """The first `count` workspace ids of the form ws-lane-N that the shard owns."""
    shards = Shards(partitions)
    found: list[str] = []
    n = 0
    while len(found) < count:
        workspace_id = f"ws-lane-{n}"
        if shards.owner(workspace_id) == shard:
            found.append(workspace_id)
        n += 1
    return found
