"""Reading the ledger topic from the beginning with a plain aiokafka consumer.

Readers read committed records only. The signal stage's entries (decisions, rejections, folds,
switches) are then each on the ledger exactly once (engine/signal_stage.py). The executors'
entries are written at-least-once with deterministic ids: an outcome written again after a
crash carries the id of its first copy. So readers still keep the first entry of each id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from topics.errors import AutopilotError
from topics.kafka_security import PLAINTEXT, KafkaSecurity
from topics.ledger import LedgerEntry, parse_entry


class FirstById:
    """Passes each entry id once, the first time it is seen (the ledger's per-id truth)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self.repeated = 0

    def admit(self, entry: LedgerEntry) -> bool:
        """True the first time an id is seen; counts the repeats."""
        if entry.entry_id in self._seen:
            self.repeated += 1
            return False
        self._seen.add(entry.entry_id)
        return True

    def filter(self, entries: Iterable[LedgerEntry]) -> Iterator[LedgerEntry]:
        """The entries whose id was not seen before, in order."""
        return (entry for entry in entries if self.admit(entry))


async def read_ledger(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[LedgerEntry]], bool],
    timeout: float,
    dedupe: bool = True,
    security: KafkaSecurity = PLAINTEXT,
) -> list[LedgerEntry]:
    """Entries from offset 0 until `until(entries)` holds; TimeoutError after `timeout` seconds.

    De-duplicated by entry id unless `dedupe=False` (for a test that counts the copies).
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **security.client_options(),
    )
    await consumer.start()
    entries: list[LedgerEntry] = []
    first = FirstById()
    deadline = time.monotonic() + timeout
    try:
        while not until(entries):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"ledger {topic}: condition not met after {timeout:.0f} s "
                    f"({len(entries)} entries read)"
                )
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batches.values():
                read = (parse_entry(r.value) for r in records)
                entries.extend(first.filter(read) if dedupe else read)
    finally:
        await consumer.stop()
    return entries


async def read_ledger_to_end(
    bootstrap: str, topic: str, *, timeout: float, security: KafkaSecurity = PLAINTEXT
) -> list[LedgerEntry]:
    """Every entry up to the end offsets as of the start of the read, de-duplicated by id
    (partition by partition, each in offset order)."""
    records = await read_records_to_end(bootstrap, topic, timeout=timeout, security=security)
    first = FirstById()
    return [
        entry
        for partition in sorted(records)
        for entry in first.filter(parse_entry(value) for _, value in records[partition])
    ]


async def partitions_of(
    bootstrap: str, topic: str, security: KafkaSecurity = PLAINTEXT
) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_options())
    try:
        await admin.start()
        # Only a listed topic is described: describing a missing one can auto-create it.
        if topic not in await admin.list_topics():
            raise AutopilotError(
                f"no ledger topic {topic} on the broker at {bootstrap}: "
                "check KAFKA_BOOTSTRAP_SERVERS and AUTOPILOT_TOPIC_PREFIX"
            )
        [described] = await admin.describe_topics([topic])
    except KafkaError as exc:
        raise AutopilotError(
            f"cannot read the ledger from {bootstrap}: check KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    finally:
        await admin.close()
    return sorted(p["partition"] for p in described["partitions"])


def load_ledger_file(lines: Iterable[str | bytes]) -> list[LedgerEntry]:
    """Entries from a JSON-lines export of the ledger (blank lines skipped), de-duplicated."""
    first = FirstById()
    return list(first.filter(parse_entry(line) for line in lines if line.strip()))


async def read_records_to_end(
    bootstrap: str, topic: str, *, timeout: float, security: KafkaSecurity = PLAINTEXT
) -> dict[int, list[tuple[int, bytes]]]:
    """Every record's (offset, value) per partition, as written (copies kept), up to the end
    offsets as of the start of the read."""
    partitions = await partitions_of(bootstrap, topic, security)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **security.client_options(),
    )
    try:
        await consumer.start()
        read = await read_partitions_to_end(
            consumer, [TopicPartition(topic, p) for p in partitions], timeout=timeout
        )
    except KafkaError as exc:
        raise AutopilotError(f"cannot read {topic} from {bootstrap}: {exc}") from exc
    finally:
        await consumer.stop()
    return {
        tp.partition: [(r.offset, r.value or b"") for r in records] for tp, records in read.items()
    }


async def seek_to_start(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
    """Position each partition at its first offset.

    Explicitly, not with seek_to_beginning: that only requests a reset, and for a partition just
    assigned, the reset to the consumer's default (`latest`) may already be in flight; its answer
    then lands last and the read starts at the end (a restarted worker read no chain heads).
    """
    for tp, offset in (await consumer.beginning_offsets(tps)).items():
        consumer.seek(tp, offset)


async def read_partitions_to_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], *, timeout: float
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Assign the partitions and read each from its start to its end offset as of now, in
    offset order; TimeoutError after `timeout` seconds."""
    consumer.assign(tps)
    await seek_to_start(consumer, tps)
    ends = await consumer.end_offsets(tps)
    records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in tps}
    # By position, not by the last record's offset: a transaction's commit marker takes an
    # offset of its own, and expired records leave the log start past 0.
    remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    deadline = time.monotonic() + timeout
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0:
            topics = ", ".join(sorted({tp.topic for tp in remaining}))
            raise TimeoutError(f"{topics}: not read to the end after {timeout:.0f} s")
        batches = await consumer.getmany(*remaining, timeout_ms=int(min(left, 0.5) * 1000))
        for tp, got in batches.items():
            records[tp].extend(r for r in got if r.offset < ends[tp])
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    return records
