"""Looking on the ledger for how another worker's action in flight ended (and, for a dead
letter, whether it parked the workspace).

Used only when a workspace is leased by someone else (its shard moved while an action ran):
the new owner asks whether the old one recorded the attempt's end since the lease began, and
stops waiting for the lease as soon as it has. One consumer per worker, no consumer group,
assigned to one ledger partition per question.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from agents.own_consumer import OwnConsumer
from core.execution_state import Lease
from topics.kafka_security import PLAINTEXT, KafkaSecurity
from topics.ledger import (
    TERMINAL_KINDS,
    ActionDeadLettered,
    ActionFailed,
    AnyLedgerEntry,
    CommandPayload,
    LedgerEntry,
    LedgerKind,
    WorkspaceParked,
    parse_entry,
)

# Producers' clocks differ: look this much further back than the lease began.
CLOCK_MARGIN_SECONDS = 60.0
READ_TIMEOUT_SECONDS = 30.0


class LedgerWatch:
    """Answers: has the attempt under this lease ended on the ledger, and how?"""

    def __init__(self, bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT) -> None:
        self._topic = topic
        self._consumer = OwnConsumer(bootstrap, security=security, isolation_level="read_committed")
        self._lock = asyncio.Lock()

    async def ended(self, partition: int, lease: Lease) -> LedgerKind | None:
        """The terminal kind, or action.failed for the leased attempt; None if nothing yet."""
        kinds = [_ending(entry, lease) for entry in await self._about(partition, lease)]
        # A failed attempt may be followed by its dead letter: a terminal kind wins.
        terminal = [kind for kind in kinds if kind in TERMINAL_KINDS]
        if terminal:
            return terminal[0]
        return next((kind for kind in kinds if kind is not None), None)

    async def dead_letter(
        self, partition: int, lease: Lease
    ) -> tuple[ActionDeadLettered | None, WorkspaceParked | None]:
        """The leased command's action.dead_lettered entry, and the workspace.parked entry its
        dead letter wrote, as far as they are on the ledger."""
        dead, parked = None, None
        for entry in await self._about(partition, lease):
            if isinstance(entry, ActionDeadLettered) and entry.payload.command_id == (
                lease.command_id
            ):
                dead = entry
            elif isinstance(entry, WorkspaceParked) and entry.payload.dead_lettered == (
                lease.command_id
            ):
                parked = entry
        return dead, parked

    async def _about(self, partition: int, lease: Lease) -> list[AnyLedgerEntry]:
        """The entries of the partition, from shortly before the lease began to its end now,
        whose record names the leased command."""
        async with self._lock:
            consumer = await self._consumer.get()
            tp = TopicPartition(self._topic, partition)
            consumer.assign([tp])
            since_ms = int((lease.since - CLOCK_MARGIN_SECONDS) * 1000)
            found = await consumer.offsets_for_times({tp: max(0, since_ms)})
            end = (await consumer.end_offsets([tp]))[tp]
            start = found[tp].offset if found.get(tp) is not None else end
            if start >= end:
                return []
            consumer.seek(tp, start)
            needle = lease.command_id.encode()
            entries: list[AnyLedgerEntry] = []
            deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                batches = await consumer.getmany(tp, timeout_ms=500)
                for record in batches.get(tp, []):
                    if record.value is not None and needle in record.value:
                        entries.append(parse_entry(record.value))
                    if record.offset + 1 >= end:
                        return entries
            raise TimeoutError(f"ledger partition {partition} not read to its end in time")

    async def stop(self) -> None:
        """Close the consumer, if one was started."""
        await self._consumer.stop()


def _ending(entry: LedgerEntry, lease: Lease) -> LedgerKind | None:
    if not isinstance(entry.payload, CommandPayload):
        return None
    if entry.payload.command_id != lease.command_id:
        return None
    if entry.kind in TERMINAL_KINDS:
        return entry.kind
    # A failure with no next attempt is followed by its dead letter: not an end by itself (the
    # worker is still writing; waiting for the dead letter keeps the chain to one writer).
    if (
        isinstance(entry, ActionFailed)
        and entry.payload.attempt == lease.attempt
        and entry.payload.retry_at is not None
    ):
        return entry.kind
    return None
