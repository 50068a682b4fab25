"""Writing dead letters so that writing one can never stop a partition.

A dead letter stores the refused bytes whole, or cut when they are too large
(core/rejections.py). If the broker still refuses it for good (a topic configured with a
smaller record limit, say), a second dead letter takes its place: the same headers, no value,
and the error's name, so the refusal is recorded where an operator looks for refused input.
Only when that one is refused too is the dead letter lost, logged at CRITICAL, while the
ledger's entry for the rejection still records what was refused and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError

from core.rejections import dead_letter_value
from topics.headers import REFUSED

logger = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
# Queues a record (topic, key, value, partition, headers); what it returns resolves on delivery.
Send = Callable[[str, bytes | None, bytes, int | None, Headers], Awaitable[Awaitable[Any]]]


class DeadLetterWriter:
    """Sends dead letters to one topic."""

    def __init__(self, send: Send, topic: str) -> None:
        self._send_record = send
        self._topic = topic

    async def send(
        self, key: bytes | None, raw: bytes | None, headers: Headers, partition: int | None = None
    ) -> Awaitable[None]:
        """Queue a dead letter for the refused bytes; the awaitable ends once it, or the record
        of its refusal, is on the broker. Raises only for an error that may pass (the broker
        away past the producer's timeout), as every other send does."""
        value, described = dead_letter_value(raw)
        written = [*headers, *described]
        try:
            delivery = await self._send(key, value, written, partition)
        except KafkaError as exc:
            if exc.retriable:
                raise
            return asyncio.ensure_future(self._refused(key, written, partition, exc))
        return asyncio.ensure_future(self._settle(delivery, key, written, partition))

    async def _send(
        self, key: bytes | None, value: bytes, headers: Headers, partition: int | None
    ) -> Awaitable[Any]:
        return await self._send_record(self._topic, key, value, partition, headers)

    async def _settle(
        self, delivery: Awaitable[Any], key: bytes | None, headers: Headers, partition: int | None
    ) -> None:
        try:
            await delivery
        except KafkaError as exc:
            if exc.retriable:
                raise
            await self._refused(key, headers, partition, exc)

    async def _refused(
        self, key: bytes | None, headers: Headers, partition: int | None, exc: KafkaError
    ) -> None:
        error = type(exc).__name__
        logger.error(
            "dead letter refused by the broker, writing one without its value",
            extra={"topic": self._topic, "partition": partition, "error": error},
        )
        try:
            delivery = await self._send(key, b"", [*headers, (REFUSED, error.encode())], partition)
            await delivery
        except KafkaError as again:
            if again.retriable:
                raise
            logger.critical(
                "dead letter refused twice by the broker: only the ledger records the rejection",
                extra={"topic": self._topic, "partition": partition, "error": type(again).__name__},
            )
