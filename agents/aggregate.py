"""The aggregate agent: signals records in, workspace windows updated, observations out.

A thin shell over the pure core: decode (topics.codec), fold (tables.windows), then send what
the core returned. Bad input goes to the dead-letter topic and the ledger, never stops the agent.

A signal read on a partition that does not own its workspace (a producer whose partitioner is
not murmur2, such as kcat or confluent-kafka by default) is re-routed: sent on, in one batch per
owning partition, to the partition that owns it, and folded there. Only those records pay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import faust

from agents.boundary import crash_on_unexpected
from agents.emit import send_entry
from app.faust_app import Autopilot
from tables import windows
from tables.windows import SourcePosition
from tables.write_behind import WriteBehindStates
from topics.batches import encode_batches
from topics.codec import decode_signals
from topics.observations import encode_observations
from topics.rejections import dlq_headers, rejection_entry
from topics.shards import Shards
from topics.signals import Signal

REROUTED_FROM_HEADER = "autopilot.rerouted-from"

logger = logging.getLogger(__name__)


@dataclass
class _Held:
    """Events of one partition whose acks wait for the next flush of that partition's state."""

    events: list[Any] = field(default_factory=list)
    sent: list[Awaitable[Any]] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)


def attach(autopilot: Autopilot) -> WriteBehindStates:
    """Register the aggregate agent on the app; returns the states it keeps, for the read view."""
    settings = autopilot.settings
    config = settings.window_config()
    states = WriteBehindStates(autopilot.states, settings.state_cache_max_workspaces)
    shards = Shards(settings.partitions)
    signals_topic = autopilot.signals.get_topic_name()
    held: dict[int, _Held] = {}

    # Faust types signal receivers as sync callables without keyword arguments; async works.
    @autopilot.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget(app: faust.App, revoked: set[Any], **_: Any) -> None:
        # Unacked records of a revoked partition are redelivered to its next owner, which
        # folds them onto the state stored at the last flush.
        for tp in revoked:
            if tp.topic == signals_topic:
                states.forget(tp.partition)
                held.pop(tp.partition, None)

    async def reject(rejections: list[Any], source: SourcePosition, key: bytes | None) -> list[Any]:
        sent = []
        now = datetime.now(UTC)
        for rejection in rejections:
            entry = rejection_entry(rejection, source, now)
            logger.warning(
                "signal rejected",
                extra={
                    "reason": rejection.reason,
                    "workspace_id": entry.workspace_id,
                    "partition": source.partition,
                    "offset": source.offset,
                },
            )
            sent.append(
                await autopilot.signals_dlq.send(
                    key=key,
                    value=rejection.raw,
                    partition=source.partition,
                    headers=dlq_headers(rejection, source),
                )
            )
            sent.append(await send_entry(autopilot, entry, source.partition))
        return sent

    async def reroute(foreign: dict[int, list[Signal]], source: SourcePosition) -> list[Any]:
        sent = []
        origin = f"{source.topic}/{source.partition}/{source.offset}".encode()
        for owner, batch in foreign.items():
            logger.info(
                "signals re-routed to their shard",
                extra={"count": len(batch), "partition": source.partition, "owner": owner},
            )
            # Re-encoding can outgrow the record it came from (derived ids are added), so
            # encode_batches splits, as the client does, rather than let the owner refuse it.
            for value in encode_batches(batch):
                sent.append(
                    await autopilot.app.producer.send(
                        signals_topic,
                        None,
                        value,
                        partition=owner,
                        timestamp=None,
                        headers=[(REROUTED_FROM_HEADER, origin)],
                    )
                )
        return sent

    @autopilot.app.agent(autopilot.signals, name="aggregate")
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("aggregate"):
            # noack lives on Stream, not on the StreamT interface Faust types agents with.
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                message = event.message
                partition = message.partition
                source = SourcePosition(message.topic, partition, message.offset)
                written_at = message.timestamp if message.timestamp else None
                decoded = decode_signals(
                    message.value, written_at, settings.signal_max_future_seconds
                )
                pending = held.setdefault(partition, _Held())
                if decoded.rejections:
                    pending.sent.extend(await reject(decoded.rejections, source, message.key))
                own, foreign = _by_owner(decoded.signals, partition, shards)
                if foreign:
                    pending.sent.extend(await reroute(foreign, source))

                observations = []
                for workspace_id, signals in own.items():
                    folded = windows.add(
                        states.get(partition, workspace_id), signals, source, config
                    )
                    states.put(partition, workspace_id, folded.state)
                    observations.extend(folded.observations)
                if observations:
                    pending.sent.append(
                        await autopilot.observations.send(
                            value=encode_observations(observations), partition=partition
                        )
                    )
                pending.events.append(event)

                caught_up = message.offset + 1 >= autopilot.app.consumer.highwater(message.tp)
                if (
                    caught_up
                    or states.dirty_count(partition) >= settings.state_flush_max_dirty
                    or time.monotonic() - pending.since >= settings.state_flush_interval_seconds
                ):
                    # Table writes need a current event of this partition: this one is.
                    states.flush(partition)
                    for sent in pending.sent:
                        await sent
                    for held_event in pending.events:
                        held_event.ack()
                    held[partition] = _Held()

    return states


def _by_owner(
    signals: list[Signal], partition: int, shards: Shards
) -> tuple[dict[str, list[Signal]], dict[int, list[Signal]]]:
    """This partition's signals per workspace, and the others' per owning partition."""
    own: dict[str, list[Signal]] = {}
    foreign: dict[int, list[Signal]] = {}
    for signal in signals:
        owner = shards.owner(signal.workspace_id)
        if owner == partition:
            own.setdefault(signal.workspace_id, []).append(signal)
        else:
            foreign.setdefault(owner, []).append(signal)
    return own, foreign
