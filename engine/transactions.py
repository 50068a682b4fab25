"""One transactional producer per owned input partition (exactly-once, the EOS-v1 scheme).

The transactional id names the stage and the input partition, so the producer a new owner
starts for a partition fences the previous owner's (its `init_transactions` bumps the epoch and
aborts what the previous owner left open): a zombie that lost the partition can no longer
commit. aiokafka 0.14 has no KIP-447 (committing offsets under the consumer group's
generation), which is why the producer is per partition rather than per worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import RecordMetadata

from topics.kafka_security import PLAINTEXT, KafkaSecurity

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record a batch produced, sent inside its partition's transaction."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default=())


def transactional_id(app_id: str, stage: str, partition: int) -> str:
    """The transactional id of one stage's producer for one input partition."""
    return f"{app_id}.{stage}.{partition}"


class PartitionTransactions:
    """The transactional producer of one input partition: sends a batch's records and its
    input offsets in one transaction."""

    def __init__(
        self,
        bootstrap: str,
        transactional_id: str,
        linger_ms: int = 5,
        request_timeout_ms: int = 40_000,
        retry_backoff_ms: int = 10,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.transactional_id = transactional_id
        # A whole commit (every request of it) waits at most this long.
        self.commit_timeout = 3 * request_timeout_ms / 1000
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            # A batch's records go out in large requests; the transaction bounds them anyway.
            max_batch_size=1 << 20,
            compression_type=None,
            request_timeout_ms=request_timeout_ms,
            # A batch's first send to a partition usually reaches the broker before the
            # previous transaction's commit marker is written there. Since KIP-890 the broker
            # then answers NOT_ENOUGH_REPLICAS (its CONCURRENT_TRANSACTIONS, translated for
            # clients without transaction v2, as aiokafka is) and the send is retried after
            # this backoff: at the default 100 ms, it was most of a decision's latency.
            retry_backoff_ms=retry_backoff_ms,
            **security.client_options(),
        )

    async def start(self) -> None:
        """Connect and fence every earlier producer of this partition."""
        await self._producer.start()

    async def commit(
        self,
        records: Sequence[Outgoing],
        offsets: dict[TopicPartition, int],
        group_id: str,
    ) -> list[RecordMetadata]:
        """Send the records and commit them with the input offsets, all or nothing.

        Raises what the broker answered (ProducerFenced when another owner took the partition
        over), or TimeoutError when the commit took longer than `commit_timeout`. Either way
        the outcome can be unknown (the broker may have committed before its answer was
        lost), and the producer may be unusable (aiokafka's sender can die with the
        connection): the caller replaces it with a new one of the same id, whose start settles
        the transaction (aborted unless it committed), rather than trying to abort it here,
        which can wait forever.
        """
        sent: list[asyncio.Future[RecordMetadata]] = []
        try:
            async with asyncio.timeout(self.commit_timeout):
                await self._producer.begin_transaction()
                for record in records:
                    sent.append(
                        await self._producer.send(
                            record.topic,
                            record.value,
                            key=record.key,
                            partition=record.partition,
                            headers=list(record.headers) or None,
                        )
                    )
                if offsets:
                    await self._producer.send_offsets_to_transaction(offsets, group_id)
                await self._producer.commit_transaction()
                return [await future for future in sent]
        except BaseException:
            # The failure is what the caller acts on; the records' own failures say the same
            # (and would each be logged as an exception never retrieved).
            for future in sent:
                future.add_done_callback(_retrieved)
            _transaction_error_retrieved(self._producer)
            raise

    async def stop(self) -> None:
        """Close the producer (an open transaction is aborted by the partition's next owner);
        given up after `commit_timeout`, as a broken producer's close can hang."""
        async with asyncio.timeout(self.commit_timeout):
            await self._producer.stop()


# aiokafka's task for one produce request (aiokafka/producer/sender.py).
_PRODUCE_REQUEST = "Sender._send_produce_req"


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def tolerate_stale_produce_requests(loop: asyncio.AbstractEventLoop) -> None:
    """Log aiokafka 0.14's KeyError from a produce request whose batch had already failed (a
    producer stopped, or its transaction given up, while the broker was away: the request's
    retry finds the batch gone; aio-libs/aiokafka#831, not merged) as what it is, once seen,
    instead of an exception never retrieved: nothing was lost, the batch's transaction never
    committed. Every other unhandled exception goes on to the loop's handler as before."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        task = context.get("future")
        if (
            isinstance(context.get("exception"), KeyError)
            and isinstance(task, asyncio.Task)
            and getattr(task.get_coro(), "__qualname__", "") == _PRODUCE_REQUEST
        ):
            logger.warning(
                "a produce request of a failed batch ended in aiokafka's KeyError; nothing lost",
                extra={"task": task.get_name()},
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


def _transaction_error_retrieved(producer: AIOKafkaProducer) -> None:
    """When aiokafka's sender dies (the broker went away mid-commit), it fails the futures it
    holds with its error: the records' (retrieved above), but also each pending batch's drain
    waiter and the transaction's waiter, which nothing awaits once the commit has given up.
    Each would be logged as an exception never retrieved, a false alarm; these are aiokafka's
    own attributes, read defensively."""
    accumulator = getattr(producer, "_message_accumulator", None)
    batches = [
        *(batch for queue in getattr(accumulator, "_batches", {}).values() for batch in queue),
        *getattr(accumulator, "_pending_batches", ()),
    ]
    manager = getattr(producer, "_txn_manager", None)
    waiters = [getattr(batch, "_drain_waiter", None) for batch in batches]
    waiters.append(getattr(manager, "_transaction_waiter", None))
    for waiter in waiters:
        if isinstance(waiter, asyncio.Future):
            waiter.add_done_callback(_retrieved)
