"""The projector: reads the ledger from its stored position and folds it into the read models.

The same code runs live (in the worker, or `autopilot projector`, following the ledger's end)
and replayed (`autopilot replay`, from offset 0 into a fresh database, to the ledger's end or to
`--until`). Positions live in the database with the rows, never in a consumer group, so a
restart resumes exactly where the last committed batch ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from projections.ledger_reader import partitions_of
from projections.store import Applied, PositionMovedError, Projection, Record
from topics.errors import AutopilotError
from topics.kafka_security import PLAINTEXT, KafkaSecurity

logger = logging.getLogger(__name__)

# Records per batch (one transaction): large enough to amortise a commit, small enough that a
# live projection is seconds behind at most.
BATCH_RECORDS = 5_000


@dataclass(frozen=True)
class Until:
    """Where a replay stops: entries recorded up to a moment, or records up to an offset."""

    at: datetime | None = None
    # The last offset to fold in every partition, or per partition.
    offset: int | None = None
    offsets: dict[int, int] = field(default_factory=dict)

    def last_offset(self, partition: int) -> int | None:
        """The last offset to fold in a partition (None: no offset bound)."""
        return self.offsets.get(partition, self.offset) if self.offsets else self.offset


@dataclass
class Progress:
    """What a run did so far."""

    records: int = 0
    folded: int = 0
    copies: int = 0
    unreadable: int = 0
    later: int = 0
    # Records between the start positions and the ends (a replay's total; 0 when following).
    total: int = 0
    began: float = field(default_factory=time.monotonic)
    # Set when the run is over (0: still running).
    ended: float = 0.0

    @property
    def rate(self) -> float:
        """Records per second so far (or over the whole run, once it is over)."""
        elapsed = (self.ended or time.monotonic()) - self.began
        return self.records / elapsed if elapsed > 0 else 0.0


class Projector:
    """Folds one ledger topic into one database, batch by batch."""

    def __init__(
        self,
        projection: Projection,
        bootstrap: str,
        *,
        until: Until | None = None,
        on_batch: Callable[[Progress], None] | None = None,
        batch_records: int = BATCH_RECORDS,
        partitions: frozenset[int] | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self._projection = projection
        self._bootstrap = bootstrap
        self._security = security
        self._topic = projection.topic
        self._until = until
        self._on_batch = on_batch
        self._batch_records = batch_records
        # Only these ledger partitions (None: all); other projectors may fold the rest.
        self._only = partitions
        self.progress = Progress()

    async def run(self, *, follow: bool, stop: asyncio.Event | None = None) -> Progress:
        """Fold to the ledger's end as of now (follow=False) or until `stop` is set."""
        partitions = [
            p
            for p in await partitions_of(self._bootstrap, self._topic, self._security)
            if self._only is None or p in self._only
        ]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # A stored position the log no longer holds (an operator set a retention): go on
            # from the oldest entry still there, never jump to the end.
            auto_offset_reset="earliest",
            **self._security.client_options(),
        )
        try:
            await consumer.start()
            tps = {p: TopicPartition(self._topic, p) for p in partitions}
            consumer.assign(list(tps.values()))
            positions = await self._seek(consumer, tps)
            latest = await consumer.end_offsets(list(tps.values()))
            ends = {tp.partition: self._bounded_end(tp.partition, o) for tp, o in latest.items()}
            self.progress.total = sum(max(0, ends[p] - positions.get(p, 0)) for p in partitions)
            # The clock starts once the consumer is placed, as for a raw consumer's rate.
            self.progress.began = time.monotonic()
            # Read to its end by the consumer's position, which also passes transaction markers.
            remaining = {p for p in partitions if positions.get(p, 0) < ends[p]}
            while follow or remaining:
                if stop is not None and stop.is_set():
                    break
                wanted = [tps[p] for p in partitions if follow or p in remaining]
                batches = await consumer.getmany(
                    *wanted, timeout_ms=500, max_records=self._batch_records
                )
                records, moves = self._batch(batches, positions, None if follow else ends)
                if not follow:
                    remaining = {p for p in remaining if await consumer.position(tps[p]) < ends[p]}
                if not moves:
                    continue
                try:
                    applied = await asyncio.to_thread(
                        self._projection.apply,
                        records,
                        moves,
                        self._until.at if self._until else None,
                    )
                except PositionMovedError as exc:
                    logger.warning(
                        "projection position moved; reading it again", extra={"reason": str(exc)}
                    )
                    positions = await self._seek(consumer, tps)
                    remaining = {p for p in partitions if positions.get(p, 0) < ends[p]}
                    continue
                for partition, (_, following) in moves.items():
                    positions[partition] = following
                self._count(len(records), applied)
        except KafkaError as exc:
            raise AutopilotError(
                f"cannot read the ledger {self._topic} from {self._bootstrap}: {exc}; "
                "check KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        finally:
            await consumer.stop()
        self.progress.ended = time.monotonic()
        return self.progress

    async def _seek(
        self, consumer: AIOKafkaConsumer, tps: dict[int, TopicPartition]
    ) -> dict[int, int]:
        positions = await asyncio.to_thread(self._projection.positions)
        for partition, tp in tps.items():
            offset = positions.get(partition, 0)
            if offset:
                consumer.seek(tp, offset)
            else:
                await consumer.seek_to_beginning(tp)
        return positions

    def _bounded_end(self, partition: int, end: int) -> int:
        last = self._until.last_offset(partition) if self._until else None
        return end if last is None else min(end, last + 1)

    def _batch(
        self,
        batches: dict[TopicPartition, list[object]],
        positions: dict[int, int],
        ends: dict[int, int] | None,
    ) -> tuple[list[Record], dict[int, tuple[int, int]]]:
        records: list[Record] = []
        moves: dict[int, tuple[int, int]] = {}
        for tp, got in batches.items():
            end = None if ends is None else ends[tp.partition]
            kept = [r for r in got if end is None or r.offset < end]  # type: ignore[attr-defined]
            if not kept:
                continue
            records.extend(
                Record(tp.partition, r.offset, r.value)  # type: ignore[attr-defined]
                for r in kept
            )
            following = kept[-1].offset + 1  # type: ignore[attr-defined]
            moves[tp.partition] = (positions.get(tp.partition, 0), following)
        return records, moves

    def _count(self, records: int, applied: Applied) -> None:
        progress = self.progress
        progress.records += records
        progress.folded += applied.folded
        progress.copies += applied.copies
        progress.unreadable += applied.unreadable
        progress.later += applied.later
        if self._on_batch is not None:
            self._on_batch(progress)
